"""A study's schedule and its immutable versions (docs/schedules.md, schedules).

Versioned like batteries: the content (name, description, events with their reminder rules,
quiet hours) lives in `ScheduleVersion` and `ScheduleEvent` rows that are never changed; every
effective change writes version n + 1, moves `Schedule.current_version` and regenerates, in the
same transaction, the visits that have not started (`lifecycle.regenerate_study_visits`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.errors import ConflictError, NotFoundError, ValidationFailedError
from app.models.audit import AuditCategory
from app.models.battery import Battery
from app.models.schedule import Schedule, ScheduleEvent, ScheduleVersion
from app.models.study import Study, StudyStatus
from app.schemas.common import PageParams, Pagination
from app.schemas.schedules import (
    MAX_DAYS_BEFORE_WINDOW,
    MAX_OCCURRENCES,
    QuietHours,
    ReminderAnchor,
    ReminderRule,
    RepeatRule,
    ScheduleEventIn,
    ScheduleEventRead,
    local_time_of,
)
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.pagination import paginate
from app.services.policy import (
    Capability,
    limit_to_readable_studies,
    require_study_capability,
    study_row_for,
)
from app.services.principals import StaffPrincipal
from app.services.schedules.lifecycle import (
    CurrentSchedule,
    VisitChangeSet,
    current_schedule,
    regenerate_study_visits,
    version_events,
)


@dataclass(slots=True)
class ScheduleFields:
    """The content of a write; `provided` names the fields a PATCH sent."""

    name: str | None = None
    description: str | None = None
    events: Sequence[ScheduleEventIn] | None = None
    reminder_quiet_hours: QuietHours | None = None
    provided: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class ScheduleView:
    """A schedule at one version, and what the write that made it did to the visits."""

    schedule: Schedule
    version: ScheduleVersion
    events: Sequence[ScheduleEvent]
    visits: VisitChangeSet | None = None


def event_read(event: ScheduleEvent) -> ScheduleEventRead:
    return ScheduleEventRead(
        key=event.key,
        label=event.label,
        anchor=event.anchor,
        offset_days=event.offset_days,
        window_before_days=event.window_before_days,
        window_after_days=event.window_after_days,
        battery_id=event.battery_id,
        repeat=RepeatRule(every_days=event.repeat_every_days, count=event.repeat_count)
        if event.repeat_every_days is not None
        else None,
        reminders=reminder_rules(event),
    )


def reminder_rules(event: ScheduleEvent) -> list[ReminderRule]:
    """The event's reminder rules as typed data (stored validated)."""
    return [ReminderRule.model_validate(rule) for rule in event.reminders]


def quiet_hours_of(version: ScheduleVersion) -> QuietHours | None:
    stored = version.reminder_quiet_hours
    return QuietHours.model_validate(stored) if stored is not None else None


def _event_content(event: ScheduleEventIn | ScheduleEvent) -> dict[str, Any]:
    read = event_read(event) if isinstance(event, ScheduleEvent) else event
    return ScheduleEventRead.model_validate(read, from_attributes=True).model_dump(mode="json")


def version_snapshot(version: ScheduleVersion, events: Sequence[ScheduleEvent]) -> dict[str, Any]:
    """What a version holds, as the audit trail records it."""
    return {
        "version": version.version,
        "name": version.name,
        "description": version.description,
        "reminder_quiet_hours": version.reminder_quiet_hours,
        "events": [_event_content(event) for event in events],
    }


@dataclass(frozen=True, slots=True)
class _Content:
    name: str
    description: str | None
    events: list[dict[str, Any]]
    quiet_hours: dict[str, Any] | None


def _field(field_name: str, message: str) -> dict[str, str]:
    return {"field": field_name, "message": message}


def _raise_if_invalid(errors: list[dict[str, str]]) -> None:
    if errors:
        raise ValidationFailedError("The schedule is not valid", details={"errors": errors})


def _reminder_errors(
    prefix: str,
    event: ScheduleEventIn,
    rule: ReminderRule,
    languages: Sequence[str],
    quiet_hours: QuietHours | None,
) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    unknown = sorted(set(rule.templates) - set(languages))
    errors.extend(
        _field(
            f"{prefix}.templates.{language}",
            f"'{language}' is not one of the study's languages ({', '.join(languages)})",
        )
        for language in unknown
    )
    if languages and languages[0] not in rule.templates:
        errors.append(
            _field(
                f"{prefix}.templates",
                f"A template in the study's first language ('{languages[0]}') is required: "
                "participants whose language has none receive it",
            )
        )
    span = event.window_before_days + event.window_after_days
    # The reminder's day, counted from the window's first day, must fall on the window's last
    # day at the latest and not long before it opens.
    day_in_window = (
        rule.offset_days
        if rule.anchor is ReminderAnchor.WINDOW_OPEN
        else (span + 1 + rule.offset_days)
    )
    if day_in_window > span:
        errors.append(
            _field(f"{prefix}.offset_days", "The reminder would come after the window has closed")
        )
    elif day_in_window < -MAX_DAYS_BEFORE_WINDOW:
        errors.append(
            _field(
                f"{prefix}.offset_days",
                f"A reminder comes at most {MAX_DAYS_BEFORE_WINDOW} days before the window opens",
            )
        )
    if quiet_hours is not None and quiet_hours.contains(local_time_of(rule.local_time)):
        errors.append(
            _field(
                f"{prefix}.local_time",
                f"{rule.local_time} is within the quiet hours "
                f"({quiet_hours.start} to {quiet_hours.end})",
            )
        )
    return errors


def _event_errors(
    events: Sequence[ScheduleEventIn],
    batteries: dict[uuid.UUID, Battery],
    languages: Sequence[str],
    quiet_hours: QuietHours | None,
) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    first_index: dict[str, int] = {}
    occurrences = 0
    for index, event in enumerate(events):
        prefix = f"events.{index}"
        if event.key in first_index:
            errors.append(
                _field(
                    f"{prefix}.key", f"Key '{event.key}' is already event {first_index[event.key]}"
                )
            )
        else:
            first_index[event.key] = index
        battery = batteries.get(event.battery_id)
        if battery is None:
            errors.append(_field(f"{prefix}.battery_id", "No battery of this study has this id"))
        elif battery.archived:
            errors.append(_field(f"{prefix}.battery_id", "This battery is archived"))
        if event.repeat is not None:
            span = event.window_before_days + event.window_after_days
            if event.repeat.every_days <= span:
                errors.append(
                    _field(
                        f"{prefix}.repeat.every_days",
                        "The windows of two occurrences would overlap: every_days must be more "
                        f"than window_before_days + window_after_days ({span})",
                    )
                )
            occurrences += event.repeat.count
        else:
            occurrences += 1
        for rule_index, rule in enumerate(event.reminders):
            errors.extend(
                _reminder_errors(
                    f"{prefix}.reminders.{rule_index}", event, rule, languages, quiet_hours
                )
            )
    if occurrences > MAX_OCCURRENCES:
        errors.append(
            _field(
                "events",
                f"The events make {occurrences} visits per participant; at most {MAX_OCCURRENCES}",
            )
        )
    return errors


async def _study_batteries(session: AsyncSession, study_id: uuid.UUID) -> dict[uuid.UUID, Battery]:
    rows = (await session.scalars(select(Battery).where(Battery.study_id == study_id))).all()
    return {battery.id: battery for battery in rows}


async def _open_study(session: AsyncSession, study_id: uuid.UUID) -> Study:
    study = await session.get(Study, study_id)
    assert study is not None  # the access check found it
    if study.status == StudyStatus.ARCHIVED:
        raise ConflictError("The schedule of an archived study cannot be changed")
    return study


def _event_rows(version_id: uuid.UUID, events: Sequence[ScheduleEventIn]) -> list[ScheduleEvent]:
    return [
        ScheduleEvent(
            id=uuid.uuid4(),
            schedule_version_id=version_id,
            position=position,
            key=event.key,
            label=event.label,
            anchor=event.anchor,
            offset_days=event.offset_days,
            window_before_days=event.window_before_days,
            window_after_days=event.window_after_days,
            battery_id=event.battery_id,
            repeat_every_days=event.repeat.every_days if event.repeat else None,
            repeat_count=event.repeat.count if event.repeat else 1,
            reminders=[rule.model_dump(mode="json") for rule in event.reminders],
        )
        for position, event in enumerate(events)
    ]


async def _record_regeneration(
    session: AsyncSession, context: AuditContext, view: ScheduleView, changes: VisitChangeSet
) -> None:
    if changes:
        # Counts only: a schedule change can move the visits of thousands of participants; each
        # visit row carries the version it follows.
        await record_about(
            session,
            context,
            AuditSubject(AuditCategory.VISIT, "schedule", view.schedule.id, view.schedule.study_id),
            "visits.regenerated",
            after={"schedule_version": view.version.version, **changes.counts()},
        )


async def create_schedule(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    fields: ScheduleFields,
) -> ScheduleView:
    """Version 1 of the study's schedule, and the visits of its enrolled participants for the
    events they have not passed yet."""
    await require_study_capability(session, principal, study_id, Capability.CONFIGURE_STUDY)
    study = await _open_study(session, study_id)
    existing = await session.scalar(select(Schedule.id).where(Schedule.study_id == study_id))
    if existing is not None:
        raise ConflictError(
            "The study already has a schedule; change it with PATCH",
            details={"reason": "SCHEDULE_EXISTS", "schedule_id": str(existing)},
        )
    events = list(fields.events or [])
    _raise_if_invalid(
        _event_errors(
            events,
            await _study_batteries(session, study_id),
            study.supported_languages or [],
            fields.reminder_quiet_hours,
        )
    )
    schedule = Schedule(
        id=uuid.uuid4(), study_id=study_id, current_version=1, created_by=principal.user_id
    )
    session.add(schedule)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ConflictError(
            "The study already has a schedule", details={"reason": "SCHEDULE_EXISTS"}
        ) from exc
    version = ScheduleVersion(
        id=uuid.uuid4(),
        schedule_id=schedule.id,
        version=1,
        name=(fields.name or "Visit schedule").strip(),
        description=fields.description,
        reminder_quiet_hours=fields.reminder_quiet_hours.model_dump()
        if fields.reminder_quiet_hours
        else None,
        created_at=utcnow(),
        created_by=principal.user_id,
    )
    session.add(version)
    await session.flush()
    rows, changes = await _write_events(session, schedule, version, events)
    await record_about(
        session,
        context,
        AuditSubject.configuration("schedule", schedule.id, study_id),
        "schedule.create",
        after=version_snapshot(version, rows),
    )
    view = ScheduleView(schedule, version, rows, changes)
    await _record_regeneration(session, context, view, changes)
    return view


async def _write_events(
    session: AsyncSession,
    schedule: Schedule,
    version: ScheduleVersion,
    events: Sequence[ScheduleEventIn],
) -> tuple[list[ScheduleEvent], VisitChangeSet]:
    """Store a new version's events and bring every participant's future visits in line."""
    rows = _event_rows(version.id, events)
    session.add_all(rows)
    await session.flush()
    # Visit rows are written before the first audit event (docs/schedules.md, locks).
    changes = await regenerate_study_visits(
        session, CurrentSchedule(schedule, version, rows), utcnow()
    )
    return rows, changes


async def _schedule_for(
    session: AsyncSession,
    principal: StaffPrincipal,
    schedule_id: uuid.UUID,
    capability: Capability,
    *,
    lock: bool = False,
) -> Schedule:
    return await study_row_for(session, principal, Schedule, schedule_id, capability, lock=lock)


async def update_schedule(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    schedule_id: uuid.UUID,
    fields: ScheduleFields,
    reason: str | None = None,
) -> ScheduleView:
    """Write the next version when the content changes and regenerate the visits that have not
    started; a PATCH that changes nothing writes nothing."""
    schedule = await _schedule_for(
        session, principal, schedule_id, Capability.CONFIGURE_STUDY, lock=True
    )
    study = await _open_study(session, schedule.study_id)
    current = await current_schedule(session, schedule.study_id)
    assert current is not None and current.schedule.id == schedule.id
    before = _Content(
        name=current.version.name,
        description=current.version.description,
        events=[_event_content(event) for event in current.events],
        quiet_hours=current.version.reminder_quiet_hours,
    )
    provided = fields.provided
    events_in = (
        list(fields.events)
        if "events" in provided and fields.events is not None
        else [ScheduleEventIn.model_validate(content) for content in before.events]
    )
    quiet_hours = (
        fields.reminder_quiet_hours
        if "reminder_quiet_hours" in provided
        else quiet_hours_of(current.version)
    )
    after = _Content(
        name=(fields.name or before.name).strip() if "name" in provided else before.name,
        description=fields.description if "description" in provided else before.description,
        events=[_event_content(event) for event in events_in],
        quiet_hours=quiet_hours.model_dump() if quiet_hours is not None else None,
    )
    if after == before:
        return ScheduleView(current.schedule, current.version, current.events)
    _raise_if_invalid(
        _event_errors(
            events_in,
            await _study_batteries(session, schedule.study_id),
            study.supported_languages or [],
            quiet_hours,
        )
    )
    version = ScheduleVersion(
        id=uuid.uuid4(),
        schedule_id=schedule.id,
        version=current.version.version + 1,
        name=after.name,
        description=after.description,
        reminder_quiet_hours=after.quiet_hours,
        created_at=utcnow(),
        created_by=principal.user_id,
    )
    session.add(version)
    schedule.current_version = version.version
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ConflictError("The schedule was changed at the same time; retry") from exc
    rows, changes = await _write_events(session, schedule, version, events_in)
    await record_about(
        session,
        context,
        AuditSubject.configuration("schedule", schedule.id, schedule.study_id),
        "schedule.update",
        before=version_snapshot(current.version, current.events),
        after=version_snapshot(version, rows),
        reason=reason,
    )
    view = ScheduleView(schedule, version, rows, changes)
    await _record_regeneration(session, context, view, changes)
    return view


async def _version(
    session: AsyncSession, schedule: Schedule, version_number: int | None
) -> ScheduleView:
    wanted = schedule.current_version if version_number is None else version_number
    version = await session.scalar(
        select(ScheduleVersion).where(
            ScheduleVersion.schedule_id == schedule.id, ScheduleVersion.version == wanted
        )
    )
    if version is None:
        raise NotFoundError(
            "Schedule version not found",
            details={"schedule_id": str(schedule.id), "version": wanted},
        )
    return ScheduleView(schedule, version, await version_events(session, version.id))


async def get_schedule(
    session: AsyncSession,
    principal: StaffPrincipal,
    schedule_id: uuid.UUID,
    version: int | None = None,
) -> ScheduleView:
    schedule = await _schedule_for(session, principal, schedule_id, Capability.READ)
    return await _version(session, schedule, version)


async def list_versions(
    session: AsyncSession, principal: StaffPrincipal, schedule_id: uuid.UUID, params: PageParams
) -> tuple[Schedule, list[ScheduleView], Pagination]:
    schedule = await _schedule_for(session, principal, schedule_id, Capability.READ)
    versions, pagination = await paginate(
        session,
        select(ScheduleVersion).where(ScheduleVersion.schedule_id == schedule.id),
        params,
        sortable={"version": ScheduleVersion.version, "created_at": ScheduleVersion.created_at},
        default_sort="version",
        tie_breaker=ScheduleVersion.version,
    )
    events_by_version: dict[uuid.UUID, list[ScheduleEvent]] = {v.id: [] for v in versions}
    if versions:
        for event in await session.scalars(
            select(ScheduleEvent)
            .where(ScheduleEvent.schedule_version_id.in_(list(events_by_version)))
            .order_by(ScheduleEvent.position)
        ):
            events_by_version[event.schedule_version_id].append(event)
    return (
        schedule,
        [ScheduleView(schedule, v, events_by_version[v.id]) for v in versions],
        pagination,
    )


async def list_schedules(
    session: AsyncSession,
    principal: StaffPrincipal,
    params: PageParams,
    *,
    study_id: uuid.UUID | None,
) -> tuple[list[ScheduleView], Pagination]:
    """The schedule of one study (a page of at most one), or of every study the caller sees."""
    statement = await limit_to_readable_studies(
        session, principal, select(Schedule), Schedule.study_id, study_id
    )
    if statement is None:
        return [], Pagination.build(page=params.page, per_page=params.per_page, total=0)
    schedules, pagination = await paginate(
        session,
        statement,
        params,
        sortable={"created_at": Schedule.created_at, "updated_at": Schedule.updated_at},
        default_sort="created_at",
        tie_breaker=Schedule.id,
    )
    return await _current_views(session, schedules), pagination


async def _current_views(
    session: AsyncSession, schedules: Sequence[Schedule]
) -> list[ScheduleView]:
    """Each schedule at its current version, in two queries for the whole page."""
    if not schedules:
        return []
    versions = (
        await session.scalars(
            select(ScheduleVersion)
            .join(
                Schedule,
                and_(
                    Schedule.id == ScheduleVersion.schedule_id,
                    Schedule.current_version == ScheduleVersion.version,
                ),
            )
            .where(Schedule.id.in_([schedule.id for schedule in schedules]))
        )
    ).all()
    events: dict[uuid.UUID, list[ScheduleEvent]] = {version.id: [] for version in versions}
    for event in await session.scalars(
        select(ScheduleEvent)
        .where(ScheduleEvent.schedule_version_id.in_(list(events)))
        .order_by(ScheduleEvent.position)
    ):
        events[event.schedule_version_id].append(event)
    by_schedule = {version.schedule_id: version for version in versions}
    return [
        ScheduleView(schedule, by_schedule[schedule.id], events[by_schedule[schedule.id].id])
        for schedule in schedules
    ]
