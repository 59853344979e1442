"""Which studies a dashboard covers and what the caller sees in each (docs/roles.md)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.models.participant import Participant
from app.models.study import Study, StudyStatus
from app.models.user import UserRole
from app.services.policy import Capability, StudyAccess, member_study_access, study_access
from app.services.principals import StaffPrincipal

SelectT = TypeVar("SelectT", bound=Select[*tuple[Any, ...]])

# The studies `GET /api/dashboard` summarises: those that are running or about to run again.
SUMMARISED_STATUSES = (StudyStatus.ACTIVE, StudyStatus.PAUSED)


@dataclass(frozen=True, slots=True)
class StudyScope:
    study: Study
    access: StudyAccess

    @property
    def study_id(self) -> uuid.UUID:
        return self.study.id

    @property
    def site_id(self) -> uuid.UUID | None:
        return self.access.site_id


async def summarised_studies(session: AsyncSession, principal: StaffPrincipal) -> list[StudyScope]:
    """The caller's active and paused studies (every one for administrators), by code."""
    statement = select(Study).where(Study.status.in_(SUMMARISED_STATUSES)).order_by(Study.code)
    memberships = await member_study_access(session, principal)
    if memberships is not None:
        if not memberships:
            return []
        statement = statement.where(Study.id.in_(list(memberships)))
    studies = (await session.scalars(statement)).all()
    return [
        StudyScope(
            study,
            memberships[study.id]
            if memberships is not None
            else StudyAccess(study_id=study.id, role=UserRole.ADMIN, site_id=None),
        )
        for study in studies
    ]


async def one_study(
    session: AsyncSession, principal: StaffPrincipal, study_id: uuid.UUID
) -> StudyScope:
    """One study the caller can read, whatever its status; NotFoundError when invisible."""
    access = await study_access(session, principal, study_id)
    access.require(Capability.READ)
    study = await session.get(Study, study_id)
    assert study is not None  # study_access has just found it
    return StudyScope(study, access)


def restrict(
    statement: SelectT,
    scopes: Sequence[StudyScope],
    study_column: InstrumentedAttribute[uuid.UUID],
    *,
    site_column: InstrumentedAttribute[uuid.UUID | None] | None = None,
    participant_column: InstrumentedAttribute[uuid.UUID] | None = None,
) -> SelectT:
    """`statement` limited to the scopes' studies and, in a site-scoped one, to the member's
    site. The site is read from `site_column` when the rows have one, else through a join of
    the participant `participant_column` names (only when some scope needs it)."""
    whole = [scope.study_id for scope in scopes if scope.site_id is None]
    scoped = [scope for scope in scopes if scope.site_id is not None]
    if not scoped:
        return statement.where(study_column.in_(whole))
    if site_column is None:
        assert participant_column is not None
        statement = statement.join(Participant, Participant.id == participant_column)
        site_column = Participant.site_id
    conditions: list[ColumnElement[bool]] = [
        and_(study_column == scope.study_id, site_column == scope.site_id) for scope in scoped
    ]
    if whole:
        conditions.append(study_column.in_(whole))
    return statement.where(or_(*conditions))
