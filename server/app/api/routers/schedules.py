"""Schedules, their versions, and visits (docs/schedules.md)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status

from app.api.dependencies import (
    ActorContextDep,
    AnyPrincipal,
    CurrentUser,
    PageParamsDep,
    ParticipantQuery,
    SessionDep,
    SiteQuery,
)
from app.api.openapi import error_responses
from app.api.routers.batteries import get_version_page_params
from app.models.schedule import VisitStatus
from app.schemas.common import ErrorEnvelope, Page, PageParams, Pagination
from app.schemas.schedules import (
    ScheduleCreate,
    ScheduleRead,
    ScheduleUpdate,
    ScheduleVersionRead,
    VisitChanges,
    VisitRead,
    VisitReschedule,
)
from app.services.schedules import definitions, visits
from app.services.schedules.definitions import ScheduleView, event_read, quiet_hours_of
from app.services.schedules.visits import VisitRow

router = APIRouter(prefix="/schedules", tags=["schedules"])

_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorEnvelope,
        "description": "The study already has a schedule, or it is archived",
    }
}


def _read(view: ScheduleView) -> ScheduleRead:
    return ScheduleRead(
        id=view.schedule.id,
        study_id=view.schedule.study_id,
        name=view.version.name,
        description=view.version.description,
        version=view.version.version,
        events=[event_read(event) for event in view.events],
        reminder_quiet_hours=quiet_hours_of(view.version),
        created_at=view.schedule.created_at,
        updated_at=view.schedule.updated_at,
        version_created_at=view.version.created_at,
        version_created_by=view.version.created_by,
        visits=VisitChanges(**view.visits.counts()) if view.visits is not None else None,
    )


def _version_read(view: ScheduleView) -> ScheduleVersionRead:
    return ScheduleVersionRead(
        schedule_id=view.schedule.id,
        version=view.version.version,
        is_current=view.version.version == view.schedule.current_version,
        name=view.version.name,
        description=view.version.description,
        events=[event_read(event) for event in view.events],
        reminder_quiet_hours=quiet_hours_of(view.version),
        created_at=view.version.created_at,
        created_by=view.version.created_by,
    )


def _visit_read(row: VisitRow) -> VisitRead:
    return VisitRead.build(
        row.visit, participant_code=row.participant_code, site_id=row.site_id, status=row.status
    )


def _visit_page(rows: list[VisitRow], pagination: Pagination) -> Page[VisitRead]:
    return Page[VisitRead](data=[_visit_read(row) for row in rows], pagination=pagination)


@router.get("", responses=error_responses(404))
async def list_schedules(
    principal: CurrentUser,
    session: SessionDep,
    page: PageParamsDep,
    study_id: uuid.UUID | None = None,
) -> Page[ScheduleRead]:
    """The schedule of a study (a study has at most one), or of every study the caller can see.
    `sort` = `created_at` (default) or `updated_at`."""
    views, pagination = await definitions.list_schedules(
        session, principal, page, study_id=study_id
    )
    return Page[ScheduleRead](data=[_read(view) for view in views], pagination=pagination)


@router.post(
    "", status_code=status.HTTP_201_CREATED, responses={**error_responses(404), **_CONFLICT}
)
async def create_schedule(
    body: ScheduleCreate, principal: CurrentUser, session: SessionDep, context: ActorContextDep
) -> ScheduleRead:
    """Version 1 of the study's schedule. The enrolled participants get the visits of the events
    they have not passed yet (`visits` counts them); later enrollments get all of theirs."""
    view = await definitions.create_schedule(
        session,
        context,
        principal,
        body.study_id,
        definitions.ScheduleFields(
            name=body.name,
            description=body.description,
            events=body.events,
            reminder_quiet_hours=body.reminder_quiet_hours,
        ),
    )
    return _read(view)


@router.get("/{schedule_id:uuid}")
async def get_schedule(
    schedule_id: uuid.UUID, principal: CurrentUser, session: SessionDep
) -> ScheduleRead:
    return _read(await definitions.get_schedule(session, principal, schedule_id))


@router.patch("/{schedule_id:uuid}", responses=_CONFLICT)
async def update_schedule(
    schedule_id: uuid.UUID,
    body: ScheduleUpdate,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
) -> ScheduleRead:
    """Change any of name, description, events (the whole list), reminder_quiet_hours. An
    effective change creates the next version and regenerates the visits that have not started;
    completed, open, missed and in-progress visits are never touched (docs/schedules.md)."""
    provided = body.model_fields_set - {"reason"}
    view = await definitions.update_schedule(
        session,
        context,
        principal,
        schedule_id,
        definitions.ScheduleFields(
            name=body.name,
            description=body.description,
            events=body.events,
            reminder_quiet_hours=body.reminder_quiet_hours,
            provided=set(provided),
        ),
        reason=body.reason,
    )
    return _read(view)


@router.get("/{schedule_id:uuid}/versions")
async def list_versions(
    schedule_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    page: Annotated[PageParams, Depends(get_version_page_params)],
) -> Page[ScheduleVersionRead]:
    """Every version, newest first; `sort` = `version` (default) or `created_at`."""
    _, views, pagination = await definitions.list_versions(session, principal, schedule_id, page)
    return Page[ScheduleVersionRead](
        data=[_version_read(view) for view in views], pagination=pagination
    )


@router.get("/{schedule_id:uuid}/versions/{version:int}")
async def get_version(
    schedule_id: uuid.UUID, version: int, principal: CurrentUser, session: SessionDep
) -> ScheduleVersionRead:
    return _version_read(await definitions.get_schedule(session, principal, schedule_id, version))


@router.get("/visits", responses=error_responses(404))
async def list_visits(
    principal: AnyPrincipal,
    session: SessionDep,
    page: PageParamsDep,
    study_id: uuid.UUID | None = None,
    participant_id: ParticipantQuery = None,
    site_id: SiteQuery = None,
    visit_status: Annotated[
        VisitStatus | None, Query(alias="status", description="The status as of now")
    ] = None,
    from_date: Annotated[
        date | None, Query(alias="from", description="Due on or after this local date")
    ] = None,
    to_date: Annotated[
        date | None, Query(alias="to", description="Due on or before this local date")
    ] = None,
) -> Page[VisitRead]:
    """The visits the caller may see: staff those of the participants they see, a participant
    token its own. `sort` = `due_at` (default), `window_start`, `window_end`, `participant_id`
    or `created_at`."""
    rows, pagination = await visits.list_visits(
        session,
        principal,
        page,
        study_id=study_id,
        participant=participant_id,
        site=site_id,
        status=visit_status,
        from_date=from_date,
        to_date=to_date,
    )
    return _visit_page(rows, pagination)


@router.get("/visits/upcoming", responses=error_responses(404))
async def list_upcoming_visits(
    principal: CurrentUser,
    session: SessionDep,
    page: PageParamsDep,
    study_id: uuid.UUID | None = None,
    site_id: SiteQuery = None,
    days: Annotated[int, Query(ge=1, le=366, description="How far ahead")] = 7,
) -> Page[VisitRead]:
    """Visits to run: open now, or whose window opens within `days` days. `sort` =
    `window_start` (default), `window_end`, `due_at`, `participant_id` or `created_at`."""
    rows, pagination = await visits.list_upcoming(
        session, principal, page, study_id=study_id, site=site_id, days=days
    )
    return _visit_page(rows, pagination)


@router.get("/visits/overdue", responses=error_responses(404))
async def list_overdue_visits(
    principal: CurrentUser,
    session: SessionDep,
    page: PageParamsDep,
    study_id: uuid.UUID | None = None,
    site_id: SiteQuery = None,
) -> Page[VisitRead]:
    """Visits whose window has closed without a completed session (missed). `sort` =
    `window_end` (default), `window_start`, `due_at`, `participant_id` or `created_at`."""
    rows, pagination = await visits.list_overdue(
        session, principal, page, study_id=study_id, site=site_id
    )
    return _visit_page(rows, pagination)


@router.get("/visits/{visit_id:uuid}")
async def get_visit(visit_id: uuid.UUID, principal: AnyPrincipal, session: SessionDep) -> VisitRead:
    return _visit_read(await visits.get_visit(session, principal, visit_id))


@router.post("/visits/{visit_id:uuid}/reschedule", responses=error_responses(409))
async def reschedule_visit(
    visit_id: uuid.UUID,
    body: VisitReschedule,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
) -> VisitRead:
    """Move one visit to a new due date, with a reason (audited). Its window keeps its width
    unless `window_before_days`/`window_after_days` are given, and must end in the future (422).
    409 for a completed or cancelled visit, or one a session is running for."""
    row = await visits.reschedule_visit(
        session,
        context,
        principal,
        visit_id,
        due_date=body.due_date,
        window_before_days=body.window_before_days,
        window_after_days=body.window_after_days,
        reason=body.reason,
    )
    return _visit_read(row)
