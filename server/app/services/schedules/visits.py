"""Reading and changing visits (docs/schedules.md, visits).

Statuses are answered as of the request: completed and cancelled are stored; scheduled, open
and missed follow from the window and the clock (`timing.status_at`), and the status filters are
the same conditions on the window's instants, so a read between two runs of the status scan is
right without writing anything. The scan (`transitions`) stores them for the indexes and for
what reacts to a window opening or closing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, false, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from app.core.clock import utcnow
from app.core.errors import ConflictError, NotFoundError, field_error
from app.models.assessment import AssessmentSession, SessionStatus
from app.models.audit import AuditCategory
from app.models.participant import Participant
from app.models.schedule import (
    PENDING_VISIT_STATUSES,
    Visit,
    VisitStatus,
)
from app.schemas.common import PageParams, Pagination
from app.schemas.schedules import ManifestVisit
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.notifications.scheduling import CancelReason, cancel_pending
from app.services.pagination import paginate_rows
from app.services.participants import participant_row_for, resolve_participant
from app.services.policy import Capability, member_study_access, study_access
from app.services.principals import ParticipantPrincipal, Principal, StaffPrincipal
from app.services.references import as_uuid, code_without_study, find_site, unknown_site
from app.services.schedules.timing import place_in_window, status_at, window


@dataclass(frozen=True, slots=True)
class VisitRow:
    """A visit with what its reads show of its participant, and its status now."""

    visit: Visit
    participant_code: str
    site_id: uuid.UUID | None
    status: VisitStatus


def status_now(visit: Visit, now: datetime) -> VisitStatus:
    return status_at(visit.status, visit.window_opens_at, visit.window_closes_at, now)


def status_condition(status: VisitStatus, now: datetime) -> ColumnElement[bool]:
    """Visits whose status at `now` is `status`, as a condition on stored columns."""
    pending = Visit.status.in_(PENDING_VISIT_STATUSES)
    if status is VisitStatus.SCHEDULED:
        return and_(pending, Visit.window_opens_at > now)
    if status is VisitStatus.OPEN:
        return and_(pending, Visit.window_opens_at <= now, Visit.window_closes_at > now)
    if status is VisitStatus.MISSED:
        return and_(pending, Visit.window_closes_at <= now)
    return Visit.status == status


SORTABLE = {
    "due_at": Visit.due_at,
    "window_start": Visit.window_opens_at,
    "window_end": Visit.window_closes_at,
    "participant_id": Participant.participant_code,
    "created_at": Visit.created_at,
}

_Statement = Select[Visit, str, uuid.UUID | None]


def _base() -> _Statement:
    return select(Visit, Participant.participant_code, Participant.site_id).join(
        Participant, Participant.id == Visit.participant_id
    )


async def _scoped(
    session: AsyncSession,
    principal: Principal,
    statement: _Statement,
    *,
    study_id: uuid.UUID | None,
    site: str | None,
) -> _Statement:
    """Only the visits the caller may see: a participant token its own; staff those of the
    participants they see (their site's when site-scoped); `site` narrows to one site."""
    if isinstance(principal, ParticipantPrincipal):
        if study_id is not None and study_id != principal.study_id:
            raise NotFoundError("Study not found")
        study_id = principal.study_id
        statement = statement.where(Visit.participant_id == principal.participant_id)
        memberships = None
    elif study_id is not None:
        access = await study_access(session, principal, study_id)
        statement = statement.where(Visit.study_id == study_id)
        if access.site_id is not None:
            statement = statement.where(Participant.site_id == access.site_id)
        memberships = None
    else:
        memberships = await member_study_access(session, principal)
        if memberships is not None:
            visible = [
                (Visit.study_id == sid)
                & ((Participant.site_id == a.site_id) if a.site_id is not None else true())
                for sid, a in memberships.items()
            ]
            statement = statement.where(or_(*visible) if visible else false())
    if site is not None:
        if study_id is None and as_uuid(site) is None:
            raise code_without_study("site_id", "site")
        site_row = await find_site(session, site, study_id)
        if site_row is None or (memberships is not None and site_row.study_id not in memberships):
            raise unknown_site()
        statement = statement.where(Participant.site_id == site_row.id)
    return statement


async def _page(
    session: AsyncSession,
    statement: _Statement,
    params: PageParams,
    now: datetime,
    default_sort: str,
) -> tuple[list[VisitRow], Pagination]:
    rows, pagination = await paginate_rows(
        session,
        statement,
        params,
        sortable=SORTABLE,
        default_sort=default_sort,
        tie_breaker=Visit.id,
    )
    return [
        VisitRow(visit, code, site_id, status_now(visit, now)) for visit, code, site_id in rows
    ], pagination


async def list_visits(
    session: AsyncSession,
    principal: Principal,
    params: PageParams,
    *,
    study_id: uuid.UUID | None,
    participant: str | None,
    site: str | None,
    status: VisitStatus | None,
    from_date: date | None,
    to_date: date | None,
) -> tuple[list[VisitRow], Pagination]:
    """Visits the caller may see; `from_date`/`to_date` bound the due date (local, included)."""
    now = utcnow()
    statement = await _scoped(session, principal, _base(), study_id=study_id, site=site)
    if participant is not None:
        named = await resolve_participant(
            session, principal, participant, Capability.READ, study_id=study_id
        )
        statement = statement.where(Visit.participant_id == named.id)
    if status is not None:
        statement = statement.where(status_condition(status, now))
    if from_date is not None:
        statement = statement.where(Visit.due_date >= from_date)
    if to_date is not None:
        statement = statement.where(Visit.due_date <= to_date)
    return await _page(session, statement, params, now, "due_at")


async def list_upcoming(
    session: AsyncSession,
    principal: StaffPrincipal,
    params: PageParams,
    *,
    study_id: uuid.UUID | None,
    site: str | None,
    days: int,
) -> tuple[list[VisitRow], Pagination]:
    """Visits to run soon: open now, or opening within `days` days."""
    now = utcnow()
    statement = await _scoped(session, principal, _base(), study_id=study_id, site=site)
    statement = statement.where(
        Visit.status.in_(PENDING_VISIT_STATUSES),
        Visit.window_closes_at > now,
        Visit.window_opens_at <= now + timedelta(days=days),
    )
    return await _page(session, statement, params, now, "window_start")


async def list_overdue(
    session: AsyncSession,
    principal: StaffPrincipal,
    params: PageParams,
    *,
    study_id: uuid.UUID | None,
    site: str | None,
) -> tuple[list[VisitRow], Pagination]:
    """Visits whose window closed without a completed session (missed)."""
    now = utcnow()
    statement = await _scoped(session, principal, _base(), study_id=study_id, site=site)
    statement = statement.where(status_condition(VisitStatus.MISSED, now))
    return await _page(session, statement, params, now, "window_end")


async def _visit_for(
    session: AsyncSession,
    principal: Principal,
    visit_id: uuid.UUID,
    capability: Capability,
    *,
    lock: bool = False,
) -> tuple[Visit, Participant]:
    return await participant_row_for(
        session, principal, Visit, visit_id, capability, missing="Visit not found", lock=lock
    )


async def get_visit(session: AsyncSession, principal: Principal, visit_id: uuid.UUID) -> VisitRow:
    visit, participant = await _visit_for(session, principal, visit_id, Capability.READ)
    return VisitRow(
        visit, participant.participant_code, participant.site_id, status_now(visit, utcnow())
    )


def _subject(visit: Visit) -> AuditSubject:
    return AuditSubject(
        AuditCategory.VISIT, "visit", visit.id, visit.study_id, visit.participant_id
    )


def visit_snapshot(visit: Visit) -> dict[str, Any]:
    return {
        "event_key": visit.event_key,
        "occurrence": visit.occurrence,
        "status": visit.status,
        "timezone": visit.timezone,
        "due_date": visit.due_date.isoformat(),
        "window_start_date": visit.window_start_date.isoformat(),
        "window_end_date": visit.window_end_date.isoformat(),
    }


async def _running_session(session: AsyncSession, visit_id: uuid.UUID) -> uuid.UUID | None:
    found: uuid.UUID | None = await session.scalar(
        select(AssessmentSession.id)
        .where(
            AssessmentSession.visit_id == visit_id,
            AssessmentSession.status == SessionStatus.STARTED,
        )
        .limit(1)
    )
    return found


async def reschedule_visit(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    visit_id: uuid.UUID,
    *,
    due_date: date,
    window_before_days: int | None,
    window_after_days: int | None,
    reason: str,
) -> VisitRow:
    """Move one visit to another due date (its window keeps its width unless given), in the
    participant's current time zone. A missed visit may be given a new window; a completed or
    cancelled one, or one a session is running for, may not (409)."""
    visit, participant = await _visit_for(
        session, principal, visit_id, Capability.EDIT_PARTICIPANTS, lock=True
    )
    now = utcnow()
    current = status_now(visit, now)
    if current in (VisitStatus.COMPLETED, VisitStatus.CANCELLED):
        raise ConflictError(
            f"A {current} visit cannot be rescheduled",
            details={"reason": f"VISIT_{current.upper()}", "status": current},
        )
    running = await _running_session(session, visit.id)
    if running is not None:
        raise ConflictError(
            "A session is running for this visit; end it first",
            details={"reason": "VISIT_IN_PROGRESS", "session_id": str(running)},
        )
    before_days = (
        window_before_days
        if window_before_days is not None
        else (visit.due_date - visit.window_start_date).days
    )
    after_days = (
        window_after_days
        if window_after_days is not None
        else (visit.window_end_date - visit.due_date).days
    )
    timing = window(due_date, before_days, after_days, participant.timezone)
    if timing.closes_at <= now:
        raise field_error("due_date", "The new window must end in the future")
    unchanged = (
        timing.start_date == visit.window_start_date
        and timing.end_date == visit.window_end_date
        and timing.due_date == visit.due_date
        and participant.timezone == visit.timezone
    )
    if unchanged:
        return VisitRow(visit, participant.participant_code, participant.site_id, current)
    before = visit_snapshot(visit)
    # The reminders planned for the old window are void; the scan plans the new window's (a
    # new round, so their dedupe keys differ from the cancelled ones) from now on: one whose
    # time has passed is not sent (it may have gone out for the old window already).
    await cancel_pending(session, visit_id=visit.id, reason=CancelReason.VISIT_RESCHEDULED)
    visit.reminder_round += 1
    visit.reminders_next_at = now
    place_in_window(visit, timing, participant.timezone, now)
    visit.rescheduled_at = now
    visit.reschedule_reason = reason
    await record_about(
        session,
        context,
        _subject(visit),
        "visit.rescheduled",
        before=before,
        after=visit_snapshot(visit),
        reason=reason,
    )
    return VisitRow(visit, participant.participant_code, participant.site_id, visit.status)


# ---------------------------------------------------------------------------------------------
# The visit of a session


async def check_visit_for_session(
    session: AsyncSession,
    visit_id: uuid.UUID,
    participant: Participant,
    battery_id: uuid.UUID,
    started_at: datetime,
    *,
    session_id: uuid.UUID,
) -> Visit:
    """The visit a new session names, if the session may count for it; its row stays locked
    until the commit, before any audit event of the transaction (docs/schedules.md, locks).

    422 naming `visit_id` when it is not a visit of this participant (whether it exists or not)
    or runs another battery; 409 when the visit is cancelled or completed by another session, or
    when the session starts outside its window (`started_at`: the device's start time for an
    offline session, so one run during the window and uploaded later is accepted). A visit
    completed by this very session (a concurrent copy of a sync item) passes: the start then
    answers the stored session.
    """
    visit = await session.get(Visit, visit_id, with_for_update=True)
    if visit is None or visit.participant_id != participant.id:
        raise field_error("visit_id", "No visit of this participant has this id")
    if visit.battery_id != battery_id:
        raise field_error(
            "visit_id", "This visit runs another battery", visit_battery_id=str(visit.battery_id)
        )
    if visit.status is VisitStatus.COMPLETED and visit.completed_session_id == session_id:
        return visit
    if visit.status in (VisitStatus.CANCELLED, VisitStatus.COMPLETED):
        raise ConflictError(
            f"The visit is {visit.status}",
            details={"reason": f"VISIT_{visit.status.upper()}", "visit_id": str(visit.id)},
        )
    if not visit.window_opens_at <= started_at < visit.window_closes_at:
        early = started_at < visit.window_opens_at
        raise ConflictError(
            "The visit's window is not open yet" if early else "The visit's window has closed",
            details={
                "reason": "VISIT_NOT_OPEN" if early else "VISIT_WINDOW_CLOSED",
                "visit_id": str(visit.id),
                "window_start": visit.window_opens_at.isoformat(),
                "window_end": visit.window_closes_at.isoformat(),
            },
        )
    return visit


async def complete_visit_of_session(
    session: AsyncSession, context: AuditContext, record: AssessmentSession
) -> Visit | None:
    """Mark the session's visit completed by it, when the session has just completed.

    Called before the session's end is audited, so that the visit's row is locked before the
    audit chain head (docs/schedules.md, locks). A visit cancelled (the
    participant withdrew meanwhile) or already completed by another session stays as it is; a
    missed one is completed: the session started inside its window (checked at start).
    """
    if record.visit_id is None:
        return None
    visit = await session.get(Visit, record.visit_id, with_for_update=True)
    if visit is None or visit.status in (VisitStatus.COMPLETED, VisitStatus.CANCELLED):
        return None
    before = visit_snapshot(visit)
    visit.status = VisitStatus.COMPLETED
    visit.completed_session_id = record.id
    visit.completed_at = utcnow()
    await cancel_pending(session, visit_id=visit.id, reason=CancelReason.VISIT_COMPLETED)
    await record_about(
        session,
        context,
        _subject(visit),
        "visit.completed",
        before=before,
        after={**visit_snapshot(visit), "session_id": str(record.id)},
    )
    return visit


# ---------------------------------------------------------------------------------------------
# The sync manifest


async def manifest_visits(
    session: AsyncSession, participant: Participant, now: datetime | None = None
) -> list[ManifestVisit]:
    """The participant's open and upcoming visits (every one whose window has not closed and
    that is neither completed nor cancelled), in the order their windows open."""
    now = now or utcnow()
    visits: Sequence[Visit] = (
        await session.scalars(
            select(Visit)
            .where(
                Visit.participant_id == participant.id,
                Visit.status.in_(PENDING_VISIT_STATUSES),
                Visit.window_closes_at > now,
            )
            .order_by(Visit.window_opens_at, Visit.event_key, Visit.occurrence)
        )
    ).all()
    return [ManifestVisit.build(visit, status_now(visit, now)) for visit in visits]
