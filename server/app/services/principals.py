"""Who is calling: the two kinds of principal a request can carry, in one place.

Staff sign in with a password (and TOTP); participants with an access code or a magic link. A
route that serves both takes a `Principal`; which participant such a caller may reach is decided
in `app.services.participants`: `resolve_participant` for one a request names,
`participant_for_principal` for one behind a stored id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pydantic import ConfigDict

from app.models.user import UserRole
from app.schemas.auth import UserDetailRead


class UserProfile(UserDetailRead):
    """The account as `GET /api/auth/me` shows it, read with the principal: from the database
    row the request loaded (`model_validate(user)`), or from the principal cache while no change
    to the account has been committed since (see `app.services.auth`). Frozen: principals are
    values."""

    model_config = ConfigDict(from_attributes=True, frozen=True)


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
