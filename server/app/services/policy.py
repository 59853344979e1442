"""Who may do what within a study (docs/roles.md), enforced here and nowhere else.

Routers ask this module for a `StudyAccess` and check capabilities on it. A study the caller
cannot see is "not found" (404), never "forbidden", so its existence does not leak; a visible
study where the caller's role lacks the capability is 403.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.core.errors import ForbiddenError, NotFoundError, not_found_as
from app.db.base import Base
from app.models.study import MemberRole, Study, StudyMember, StudyRole
from app.models.user import UserRole
from app.services.principals import StaffPrincipal


class Capability(StrEnum):
    READ = "read"
    SEE_CONTACT_DETAILS = "see_contact_details"
    EDIT_PARTICIPANTS = "edit_participants"
    CONFIGURE_STUDY = "configure_study"
    EXPORT = "export"
    AUDIT = "audit"


_CAPABILITIES: dict[StudyRole, frozenset[Capability]] = {
    UserRole.ADMIN: frozenset(Capability),
    MemberRole.RESEARCHER: frozenset(Capability),
    MemberRole.COORDINATOR: frozenset(
        {Capability.READ, Capability.SEE_CONTACT_DETAILS, Capability.EDIT_PARTICIPANTS}
    ),
    MemberRole.READ_ONLY: frozenset({Capability.READ}),
}

# Global roles allowed to create studies. The creator becomes the new study's researcher, so
# a coordinator can set up a study end to end (issue: "a coordinator can create a study with a
# site ..."); rights in studies they were added to stay those of their membership.
STUDY_CREATORS = frozenset({UserRole.ADMIN, UserRole.RESEARCHER, UserRole.COORDINATOR})

SelectT = TypeVar("SelectT", bound=Select[Any])


class _OfAStudy(Protocol):
    study_id: uuid.UUID


StudyRowT = TypeVar("StudyRowT", bound=Base)


@dataclass(frozen=True, slots=True)
class StudyAccess:
    study_id: uuid.UUID
    role: StudyRole
    site_id: uuid.UUID | None  # set for site-scoped members
    # Capabilities the caller's personal access token does not carry (docs/accounts.md).
    withheld: frozenset[Capability] = frozenset()

    def can(self, capability: Capability) -> bool:
        return (
            capability in _CAPABILITIES.get(self.role, frozenset())
            and capability not in self.withheld
        )

    def require(self, capability: Capability) -> None:
        if not self.can(capability):
            raise ForbiddenError(
                "Your role in this study does not allow this",
                details={"required": capability.value, "study_role": self.role},
            )

    def sees_site(self, site_id: uuid.UUID | None) -> bool:
        return self.site_id is None or self.site_id == site_id


def withheld_capabilities(principal: StaffPrincipal) -> frozenset[Capability]:
    """What a personal access token's scopes take away from its user's rights."""
    scopes = principal.token_scopes
    if scopes is None:
        return frozenset()
    withheld: set[Capability] = set()
    if "export" not in scopes:
        withheld.add(Capability.EXPORT)
    if "write" not in scopes:
        withheld.update({Capability.EDIT_PARTICIPANTS, Capability.CONFIGURE_STUDY})
    return frozenset(withheld)


async def study_access(
    session: AsyncSession, principal: StaffPrincipal, study_id: uuid.UUID
) -> StudyAccess:
    """The caller's access to a study; NotFoundError when the study is invisible to them."""
    if principal.is_admin:
        if await session.get(Study, study_id) is None:
            raise NotFoundError("Study not found")
        return StudyAccess(
            study_id=study_id,
            role=UserRole.ADMIN,
            site_id=None,
            withheld=withheld_capabilities(principal),
        )
    member = await session.scalar(
        select(StudyMember).where(
            StudyMember.study_id == study_id, StudyMember.user_id == principal.user_id
        )
    )
    if member is None:
        raise NotFoundError("Study not found")
    return StudyAccess(
        study_id=study_id,
        role=member.role,
        site_id=member.site_id,
        withheld=withheld_capabilities(principal),
    )


async def require_study_capability(
    session: AsyncSession,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    capability: Capability,
) -> StudyAccess:
    access = await study_access(session, principal, study_id)
    access.require(capability)
    return access


async def study_row_for(
    session: AsyncSession,
    principal: StaffPrincipal,
    model: type[StudyRowT],
    row_id: uuid.UUID,
    capability: Capability,
    *,
    lock: bool = False,
) -> StudyRowT:
    """A row that belongs to one study (a battery, a schedule), for a caller with `capability`
    there. A row of a study the caller cannot see is "<Model> not found", like a missing one;
    `lock` serialises writers of the row (two PATCHes cannot both write version n + 1)."""
    missing = f"{model.__name__} not found"
    row = await session.get(model, row_id)
    if row is None:
        raise NotFoundError(missing)
    owned: _OfAStudy = row  # type: ignore[assignment]
    with not_found_as(missing):
        await require_study_capability(session, principal, owned.study_id, capability)
    if lock:
        await session.refresh(row, with_for_update=True)
    return row


async def member_study_access(
    session: AsyncSession, principal: StaffPrincipal
) -> dict[uuid.UUID, StudyAccess] | None:
    """Every study the caller is a member of, or None for administrators (all studies)."""
    if principal.is_admin:
        return None
    members = (
        await session.scalars(select(StudyMember).where(StudyMember.user_id == principal.user_id))
    ).all()
    withheld = withheld_capabilities(principal)
    return {
        m.study_id: StudyAccess(
            study_id=m.study_id, role=m.role, site_id=m.site_id, withheld=withheld
        )
        for m in members
    }


async def limit_to_readable_studies(
    session: AsyncSession,
    principal: StaffPrincipal,
    statement: SelectT,
    study_column: InstrumentedAttribute[uuid.UUID],
    study_id: uuid.UUID | None,
) -> SelectT | None:
    """`statement` limited to the rows of `study_id`, which the caller must be able to read,
    or without it to the studies the caller is a member of (administrators: every study).
    None when the caller is a member of no study: the list is empty without a query."""
    if study_id is not None:
        await require_study_capability(session, principal, study_id, Capability.READ)
        return statement.where(study_column == study_id)
    memberships = await member_study_access(session, principal)
    if memberships is None:
        return statement
    if not memberships:
        return None
    return statement.where(study_column.in_(list(memberships)))


def require_study_creator(principal: StaffPrincipal) -> None:
    if principal.role not in STUDY_CREATORS:
        raise ForbiddenError(
            "Read-only users cannot create studies",
            details={"required_roles": sorted(r.value for r in STUDY_CREATORS)},
        )


async def audit_scopes(
    session: AsyncSession, principal: StaffPrincipal, study_id: uuid.UUID | None
) -> dict[uuid.UUID, uuid.UUID | None] | None:
    """Whose audit events the caller may read: study → the member's site (None: the whole
    study); None means every event (administrators). Needs the audit capability
    (docs/roles.md, the audit trail): a `study_id` the caller cannot see is 404, one where
    their role lacks it 403, and without `study_id` 403 when no study grants it."""
    if principal.is_admin:
        if study_id is not None:
            await study_access(session, principal, study_id)
            return {study_id: None}
        return None
    memberships = await member_study_access(session, principal) or {}
    if study_id is not None:
        if study_id not in memberships:
            raise NotFoundError("Study not found")
        memberships[study_id].require(Capability.AUDIT)
        return {study_id: memberships[study_id].site_id}
    allowed = {
        sid: access.site_id for sid, access in memberships.items() if access.can(Capability.AUDIT)
    }
    if not allowed:
        raise ForbiddenError(
            "Your roles do not include reading the audit trail",
            details={"required": Capability.AUDIT.value},
        )
    return allowed
