"""Who is calling: the two kinds of principal a request can carry, in one place.

Staff sign in with a password (and TOTP); participants with an access code or a magic link. A
route that serves both takes a `Principal`; which participant such a caller may reach is decided
in `app.services.participants`: `resolve_participant` for one a request names,
`participant_for_principal` for one behind a stored id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from app.models.user import UserRole


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
