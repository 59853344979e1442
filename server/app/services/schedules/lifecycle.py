"""Visits follow the participant and the schedule (docs/schedules.md, visits).

One rule does all the work, `_reconcile`: compare the visits the current schedule version plans
for a participant with the visits they have, and

- create the planned visits they lack (at enrollment all of them, the past ones included, which
  are missed; later only those whose window has not closed: a participant who has passed an
  event does not get it afterwards);
- move the visits that have not started (stored `scheduled`, window not yet open, no session
  ever started for them) to the planned timing, or cancel them when their event has left the
  schedule or its new window is already over;
- leave alone every visit that is open, missed, completed, cancelled by a withdrawal, or that a
  session names (running or not): what has happened is never rewritten.

A visit rescheduled by hand keeps its dates through a regeneration (its instants follow the
participant's time zone); it still follows its event's label and battery, and is cancelled when
the event leaves the schedule.

This module never imports `app.services.participants`: that service calls it.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql.elements import ColumnElement

from app.models.assessment import AssessmentSession
from app.models.audit import AuditCategory
from app.models.participant import Participant, ParticipantStatus
from app.models.schedule import (
    PENDING_VISIT_STATUSES,
    Schedule,
    ScheduleEvent,
    ScheduleVersion,
    Visit,
    VisitAnchor,
    VisitCancellation,
    VisitStatus,
)
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.notifications.scheduling import CancelReason, cancel_pending_of_visits
from app.services.schedules.timing import (
    Window,
    occurrence_due_dates,
    place_in_window,
    status_at,
    window,
    window_between,
)


@dataclass(frozen=True, slots=True)
class CurrentSchedule:
    schedule: Schedule
    version: ScheduleVersion
    events: Sequence[ScheduleEvent]


async def current_schedule(session: AsyncSession, study_id: uuid.UUID) -> CurrentSchedule | None:
    """The study's schedule at its current version with its events in order; None without one."""
    schedule = await session.scalar(select(Schedule).where(Schedule.study_id == study_id))
    if schedule is None:
        return None
    version = await session.scalar(
        select(ScheduleVersion).where(
            ScheduleVersion.schedule_id == schedule.id,
            ScheduleVersion.version == schedule.current_version,
        )
    )
    assert version is not None  # written together with the schedule
    return CurrentSchedule(schedule, version, await version_events(session, version.id))


async def version_events(session: AsyncSession, version_id: uuid.UUID) -> Sequence[ScheduleEvent]:
    """The events of one schedule version, in their order."""
    return (
        await session.scalars(
            select(ScheduleEvent)
            .where(ScheduleEvent.schedule_version_id == version_id)
            .order_by(ScheduleEvent.position)
        )
    ).all()


@dataclass(frozen=True, slots=True)
class ParticipantDates:
    """What planning needs to know about a participant."""

    id: uuid.UUID
    study_id: uuid.UUID
    timezone: str
    enrollment_date: date | None
    anchor_date: date | None

    @classmethod
    def of(cls, participant: Participant) -> ParticipantDates:
        return cls(
            id=participant.id,
            study_id=participant.study_id,
            timezone=participant.timezone,
            enrollment_date=participant.enrollment_date,
            anchor_date=participant.anchor_date,
        )

    def anchor(self, kind: VisitAnchor) -> date | None:
        if kind is VisitAnchor.ENROLLMENT_DATE:
            return self.enrollment_date
        return self.anchor_date


@dataclass(frozen=True, slots=True)
class PlannedVisit:
    event: ScheduleEvent
    occurrence: int
    anchor_date: date
    window: Window


def plan_visits(
    events: Iterable[ScheduleEvent], participant: ParticipantDates
) -> dict[tuple[str, int], PlannedVisit]:
    """Every visit the events plan for the participant, by (event key, occurrence). An event
    anchored on a date the participant does not have yet plans nothing."""
    planned: dict[tuple[str, int], PlannedVisit] = {}
    for event in events:
        anchor_date = participant.anchor(event.anchor)
        if anchor_date is None:
            continue
        for occurrence, due_date in occurrence_due_dates(
            anchor_date, event.offset_days, event.repeat_every_days, event.repeat_count
        ):
            planned[(event.key, occurrence)] = PlannedVisit(
                event=event,
                occurrence=occurrence,
                anchor_date=anchor_date,
                window=window(
                    due_date,
                    event.window_before_days,
                    event.window_after_days,
                    participant.timezone,
                ),
            )
    return planned


# What a regeneration may change on an existing visit.
_RECONCILED_COLUMNS = (
    "schedule_id",
    "schedule_version",
    "schedule_event_id",
    "label",
    "battery_id",
    "anchor",
    "anchor_date",
    "timezone",
    "due_date",
    "window_start_date",
    "window_end_date",
    "due_at",
    "window_opens_at",
    "window_closes_at",
    "status",
    "cancelled_at",
    "cancellation_reason",
)


@dataclass(slots=True)
class VisitState:
    """An existing visit as reconciliation reads and changes it: plain values, not an ORM row,
    so that a study's visits are read and written in bulk (a schedule change moves thousands)."""

    id: uuid.UUID
    participant_id: uuid.UUID
    event_key: str
    occurrence: int
    rescheduled_at: datetime | None
    schedule_id: uuid.UUID
    schedule_version: int
    schedule_event_id: uuid.UUID
    label: str
    battery_id: uuid.UUID
    anchor: VisitAnchor
    anchor_date: date
    timezone: str
    due_date: date
    window_start_date: date
    window_end_date: date
    due_at: datetime
    window_opens_at: datetime
    window_closes_at: datetime
    status: VisitStatus
    cancelled_at: datetime | None
    cancellation_reason: VisitCancellation | None

    def reconciled(self) -> dict[str, Any]:
        return {column: getattr(self, column) for column in _RECONCILED_COLUMNS}


_STATE_COLUMNS = [getattr(Visit, name) for name in VisitState.__slots__]


@dataclass(slots=True)
class VisitChangeSet:
    created: list[dict[str, Any]] = field(default_factory=list)  # rows to insert
    updated: list[VisitState] = field(default_factory=list)
    cancelled: list[VisitState] = field(default_factory=list)
    participants: int = 0

    def __bool__(self) -> bool:
        return bool(self.created or self.updated or self.cancelled)

    def counts(self) -> dict[str, int]:
        return {
            "participants": self.participants,
            "created": len(self.created),
            "updated": len(self.updated),
            "cancelled": len(self.cancelled),
        }

    def listed(self) -> dict[str, Any]:
        """For one participant's audit event: which visits, not only how many."""
        return {
            "created": [
                {
                    "id": str(row["id"]),
                    "event_key": row["event_key"],
                    "occurrence": row["occurrence"],
                    "due_date": row["due_date"].isoformat(),
                }
                for row in self.created
            ],
            "updated": [_visit_summary(visit) for visit in self.updated],
            "cancelled": [str(visit.id) for visit in self.cancelled],
        }


def _visit_summary(visit: Visit | VisitState) -> dict[str, Any]:
    return {
        "id": str(visit.id),
        "event_key": visit.event_key,
        "occurrence": visit.occurrence,
        "due_date": visit.due_date.isoformat(),
    }


def _starts_from_scratch(visit: VisitState, touched: frozenset[uuid.UUID], now: datetime) -> bool:
    """Whether a regeneration may move or cancel this visit: nothing has happened to it yet."""
    if visit.id in touched:
        return False
    if visit.status is VisitStatus.CANCELLED:
        return visit.cancellation_reason is VisitCancellation.SCHEDULE_CHANGED
    return visit.status is VisitStatus.SCHEDULED and visit.window_opens_at > now


def _cancel(visit: VisitState, now: datetime) -> None:
    visit.status = VisitStatus.CANCELLED
    visit.cancelled_at = now
    visit.cancellation_reason = VisitCancellation.SCHEDULE_CHANGED


def _place(
    visit: VisitState,
    current: CurrentSchedule,
    planned: PlannedVisit,
    timing: Window,
    timezone: str,
    now: datetime,
) -> None:
    visit.schedule_id = current.schedule.id
    visit.schedule_version = current.version.version
    visit.schedule_event_id = planned.event.id
    visit.label = planned.event.label
    visit.battery_id = planned.event.battery_id
    visit.anchor = planned.event.anchor
    visit.anchor_date = planned.anchor_date
    place_in_window(visit, timing, timezone, now)
    visit.cancelled_at = None
    visit.cancellation_reason = None


def _new_row(
    participant: ParticipantDates,
    current: CurrentSchedule,
    planned: PlannedVisit,
    now: datetime,
) -> dict[str, Any]:
    timing = planned.window
    return {
        "id": uuid.uuid4(),
        "study_id": participant.study_id,
        "participant_id": participant.id,
        "schedule_id": current.schedule.id,
        "schedule_version": current.version.version,
        "schedule_event_id": planned.event.id,
        "event_key": planned.event.key,
        "occurrence": planned.occurrence,
        "label": planned.event.label,
        "battery_id": planned.event.battery_id,
        "anchor": planned.event.anchor,
        "anchor_date": planned.anchor_date,
        "timezone": participant.timezone,
        "due_date": timing.due_date,
        "window_start_date": timing.start_date,
        "window_end_date": timing.end_date,
        "due_at": timing.due_at,
        "window_opens_at": timing.opens_at,
        "window_closes_at": timing.closes_at,
        "status": status_at(VisitStatus.SCHEDULED, timing.opens_at, timing.closes_at, now),
        "created_at": now,
        "updated_at": now,
    }


def _reconcile(
    participant: ParticipantDates,
    current: CurrentSchedule,
    existing: Sequence[VisitState],
    touched: frozenset[uuid.UUID],
    now: datetime,
    *,
    include_past: bool,
    changes: VisitChangeSet,
) -> None:
    """Bring one participant's visits in line with the current version (module docstring)."""
    changes.participants += 1
    plan = plan_visits(current.events, participant)
    by_key = {(visit.event_key, visit.occurrence): visit for visit in existing}
    for key, planned in plan.items():
        visit = by_key.get(key)
        if visit is None:
            if include_past or planned.window.closes_at > now:
                changes.created.append(_new_row(participant, current, planned, now))
            continue
        if not _starts_from_scratch(visit, touched, now):
            continue
        timing = (
            window_between(
                visit.due_date, visit.window_start_date, visit.window_end_date, participant.timezone
            )
            if visit.rescheduled_at is not None
            else planned.window
        )
        if timing.closes_at <= now and not include_past:
            # Under the new timing the participant has passed this occurrence already.
            if visit.status is not VisitStatus.CANCELLED:
                _cancel(visit, now)
                changes.cancelled.append(visit)
            continue
        before = visit.reconciled()
        _place(visit, current, planned, timing, participant.timezone, now)
        if visit.reconciled() != before:
            changes.updated.append(visit)
    for key, visit in by_key.items():
        if (
            key not in plan
            and visit.status is not VisitStatus.CANCELLED
            and _starts_from_scratch(visit, touched, now)
        ):
            _cancel(visit, now)
            changes.cancelled.append(visit)


async def _write(session: AsyncSession, changes: VisitChangeSet, now: datetime) -> None:
    """Insert the new visits and update the changed ones, each as one executemany (the unit of
    work would send one UPDATE per row)."""
    if changes.created:
        await session.execute(insert(Visit), changes.created)
    changed = [*changes.updated, *changes.cancelled]
    if changed:
        await session.execute(
            update(Visit),
            [{"id": visit.id, **visit.reconciled(), "updated_at": now} for visit in changed],
        )
        # Their pending reminders are void: cancelled, and planned anew by the reminder scan
        # (for the visits still pending) in a new round, whose dedupe keys are new. The cursor
        # starts at the change: a reminder whose time has passed (possibly sent already, for
        # the old timing) is not sent again.
        changed_ids = [visit.id for visit in changed]
        for start in range(0, len(changed_ids), 1000):
            await session.execute(
                update(Visit)
                .where(Visit.id.in_(changed_ids[start : start + 1000]))
                .values(
                    reminder_round=Visit.reminder_round + 1,
                    reminders_next_at=now,
                )
                .execution_options(synchronize_session=False)
            )
        await cancel_pending_of_visits(session, changed_ids, reason=CancelReason.SCHEDULE_CHANGED)
        # A bulk UPDATE leaves the identity map alone: a row of these visits loaded earlier in
        # the transaction is read again when next used.
        for visit in changed:
            loaded = session.identity_map.get(identity_key(Visit, visit.id))
            if loaded is not None:
                session.expire(loaded)


async def _visit_states(
    session: AsyncSession, *conditions: ColumnElement[bool]
) -> list[VisitState]:
    rows = await session.execute(select(*_STATE_COLUMNS).where(*conditions))
    return [VisitState(*row) for row in rows]


async def _touched_by_sessions(
    session: AsyncSession, *, study_id: uuid.UUID, participant_id: uuid.UUID | None = None
) -> frozenset[uuid.UUID]:
    """The visits some session was started for: a regeneration never touches them."""
    statement = select(AssessmentSession.visit_id).where(
        AssessmentSession.study_id == study_id, AssessmentSession.visit_id.is_not(None)
    )
    if participant_id is not None:
        statement = statement.where(AssessmentSession.participant_id == participant_id)
    return frozenset(v for v in (await session.scalars(statement)).all() if v is not None)


async def _sync_one(
    session: AsyncSession, participant: Participant, now: datetime, *, include_past: bool
) -> tuple[CurrentSchedule | None, VisitChangeSet]:
    changes = VisitChangeSet()
    current = await current_schedule(session, participant.study_id)
    if current is None or participant.status is not ParticipantStatus.ENROLLED:
        return current, changes
    touched = await _touched_by_sessions(
        session, study_id=participant.study_id, participant_id=participant.id
    )
    existing = await _visit_states(session, Visit.participant_id == participant.id)
    _reconcile(
        ParticipantDates.of(participant),
        current,
        existing,
        touched,
        now,
        include_past=include_past,
        changes=changes,
    )
    await _write(session, changes, now)
    return current, changes


async def generate_visits_on_enrollment(
    session: AsyncSession, context: AuditContext, participant: Participant, now: datetime
) -> VisitChangeSet:
    """Every visit of the study's schedule for a participant who has just been enrolled, past
    windows included (they are missed); nothing without a schedule. Audited as
    `visits.generated`."""
    current, changes = await _sync_one(session, participant, now, include_past=True)
    if changes and current is not None:
        await record_about(
            session,
            context,
            AuditSubject.participant(participant, AuditCategory.VISIT),
            "visits.generated",
            after={"schedule_version": current.version.version, **changes.listed()},
        )
    return changes


async def refresh_participant_visits(
    session: AsyncSession,
    context: AuditContext,
    participant: Participant,
    now: datetime,
    *,
    changed: Sequence[str],
    reason: str | None,
) -> VisitChangeSet:
    """Recompute the visits that have not started after a change of the participant's time zone,
    enrollment date or anchor date (`changed` names them). Audited as `visits.regenerated`."""
    current, changes = await _sync_one(session, participant, now, include_past=False)
    if changes and current is not None:
        await record_about(
            session,
            context,
            AuditSubject.participant(participant, AuditCategory.VISIT),
            "visits.regenerated",
            after={
                "schedule_version": current.version.version,
                "because_of": list(changed),
                **changes.listed(),
            },
            reason=reason,
        )
    return changes


async def generate_visits_for_imported(
    session: AsyncSession,
    study_id: uuid.UUID,
    participants: Sequence[ParticipantDates],
    now: datetime,
) -> VisitChangeSet:
    """The visits of newly imported enrolled participants, as enrollment makes them, inserted in
    bulk; the import's own audit event records how many."""
    changes = VisitChangeSet()
    current = await current_schedule(session, study_id)
    if current is None:
        return changes
    for participant in participants:
        _reconcile(participant, current, (), frozenset(), now, include_past=True, changes=changes)
    await _write(session, changes, now)
    return changes


async def regenerate_study_visits(
    session: AsyncSession, current: CurrentSchedule, now: datetime
) -> VisitChangeSet:
    """After a schedule change: every enrolled participant's visits that have not started, in
    one pass over the study: three queries to read, one INSERT and one UPDATE executemany to
    write, whatever its size."""
    study_id = current.schedule.study_id
    enrolled = select(
        Participant.id, Participant.timezone, Participant.enrollment_date, Participant.anchor_date
    ).where(Participant.study_id == study_id, Participant.status == ParticipantStatus.ENROLLED)
    participants = [
        ParticipantDates(
            id=participant_id,
            study_id=study_id,
            timezone=timezone,
            enrollment_date=enrollment_date,
            anchor_date=anchor_date,
        )
        for participant_id, timezone, enrollment_date, anchor_date in await session.execute(
            enrolled
        )
    ]
    # The study's visits, those of participants no longer enrolled included: a plain filter on the
    # study reads them in one index range, where a join or a semi-join to the enrolled
    # participants can be planned badly right after an import (no statistics yet).
    visits_by_participant: dict[uuid.UUID, list[VisitState]] = defaultdict(list)
    for visit in await _visit_states(session, Visit.study_id == study_id):
        visits_by_participant[visit.participant_id].append(visit)
    touched = await _touched_by_sessions(session, study_id=study_id)
    changes = VisitChangeSet()
    for participant in participants:
        _reconcile(
            participant,
            current,
            visits_by_participant.get(participant.id, ()),
            touched,
            now,
            include_past=False,
            changes=changes,
        )
    await _write(session, changes, now)
    return changes


async def cancel_visits_on_withdrawal(
    session: AsyncSession, context: AuditContext, participant: Participant, now: datetime
) -> list[Visit]:
    """Cancel the participant's visits whose window has not closed; missed and completed ones
    stay what they were. Audited as `visits.cancelled`."""
    cancelled: list[Visit] = []
    visits = await session.scalars(select(Visit).where(Visit.participant_id == participant.id))
    for visit in visits:
        if visit.status in PENDING_VISIT_STATUSES and visit.window_closes_at > now:
            visit.status = VisitStatus.CANCELLED
            visit.cancelled_at = now
            visit.cancellation_reason = VisitCancellation.PARTICIPANT_WITHDRAWN
            cancelled.append(visit)
    if cancelled:
        await record_about(
            session,
            context,
            AuditSubject.participant(participant, AuditCategory.VISIT),
            "visits.cancelled",
            after={
                "reason": VisitCancellation.PARTICIPANT_WITHDRAWN.value,
                "visits": [_visit_summary(visit) for visit in cancelled],
            },
        )
    return cancelled
