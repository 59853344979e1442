"""Who is calling: the two kinds of principal a request can carry, in one place.

Staff sign in with a password (and TOTP); participants with an access code or a magic link. A
route that serves both takes a `Principal`; which participant such a caller may reach is decided
in `app.services.participants`: `resolve_participant` for one a request names,
`participant_for_principal` for one behind a stored id.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.models.user import User, UserRole, UserStatus


@dataclass(frozen=True, slots=True)
class UserProfile:
    """The account as `GET /api/auth/me` shows it, read with the principal: from the database
    row the request loaded, or from the principal cache while no change to the account has been
    committed since (see `app.services.auth`)."""

    id: uuid.UUID
    email: str
    name: str
    role: UserRole
    status: UserStatus
    must_change_password: bool
    terms_accepted_at: datetime | None
    totp_enabled: bool
    last_login_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserProfile:
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            role=user.role,
            status=user.status,
            must_change_password=user.must_change_password,
            terms_accepted_at=user.terms_accepted_at,
            totp_enabled=user.totp_enabled,
            last_login_at=user.last_login_at,
            created_at=user.created_at,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "email": self.email,
            "name": self.name,
            "role": self.role.value,
            "status": self.status.value,
            "must_change_password": self.must_change_password,
            "terms_accepted_at": _instant_json(self.terms_accepted_at),
            "totp_enabled": self.totp_enabled,
            "last_login_at": _instant_json(self.last_login_at),
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> UserProfile:
        return cls(
            id=uuid.UUID(str(value["id"])),
            email=str(value["email"]),
            name=str(value["name"]),
            role=UserRole(str(value["role"])),
            status=UserStatus(str(value["status"])),
            must_change_password=bool(value["must_change_password"]),
            terms_accepted_at=_instant(value["terms_accepted_at"]),
            totp_enabled=bool(value["totp_enabled"]),
            last_login_at=_instant(value["last_login_at"]),
            created_at=datetime.fromisoformat(str(value["created_at"])),
        )


def _instant_json(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _instant(value: object) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


@dataclass(frozen=True, slots=True)
class StaffPrincipal:
    """The authenticated staff member of a request, as the routers and policies see them."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    email: str
    name: str
    role: UserRole
    must_change_password: bool
    # Set when the request came with a personal access token (docs/accounts.md): its id, and
    # the scopes that narrow what the user may do through it. None: a login session.
    token_id: uuid.UUID | None = None
    token_scopes: frozenset[str] | None = None
    # The account's details when they were read with the principal; None: read them on demand.
    profile: UserProfile | None = None

    @classmethod
    def of_login(cls, profile: UserProfile, session_id: uuid.UUID) -> StaffPrincipal:
        """The principal of a login session of the account `profile` shows."""
        return cls(
            user_id=profile.id,
            session_id=session_id,
            email=profile.email,
            name=profile.name,
            role=profile.role,
            must_change_password=profile.must_change_password,
            profile=profile,
        )

    @property
    def is_admin(self) -> bool:
        return self.role is UserRole.ADMIN


@dataclass(frozen=True, slots=True)
class ParticipantPrincipal:
    """A participant signed in on a device: it reaches only its own data."""

    participant_id: uuid.UUID
    study_id: uuid.UUID
    login_id: uuid.UUID


Principal = StaffPrincipal | ParticipantPrincipal
