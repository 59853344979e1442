"""Batteries and their versions (docs/batteries.md, batteries)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status

from app.api.dependencies import ActorContextDep, CurrentUser, PageParamsDep, SessionDep
from app.api.openapi import error_responses
from app.models.battery import Battery, BatteryVersion
from app.schemas.batteries import (
    BatteryCreate,
    BatteryRead,
    BatteryTask,
    BatteryTaskIn,
    BatteryUpdate,
    BatteryVersionRead,
)
from app.schemas.common import ErrorEnvelope, Page, PageParams, SortOrder
from app.services import batteries as service

router = APIRouter(prefix="/batteries", tags=["batteries"])

_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorEnvelope, "description": "The battery or its study is archived"}
}


def _tasks(stored: list[dict[str, Any]]) -> list[BatteryTask]:
    return [BatteryTask(module_id=task["module_id"], config=task["config"]) for task in stored]


def _read(battery: Battery, version: BatteryVersion) -> BatteryRead:
    return BatteryRead(
        id=battery.id,
        study_id=battery.study_id,
        name=version.name,
        description=version.description,
        version=version.version,
        tasks=_tasks(version.tasks),
        estimated_minutes=version.estimated_minutes,
        archived=battery.archived,
        created_at=battery.created_at,
        updated_at=battery.updated_at,
        version_created_at=version.created_at,
        version_created_by=version.created_by,
    )


def _version_read(battery: Battery, version: BatteryVersion) -> BatteryVersionRead:
    return BatteryVersionRead(
        battery_id=version.battery_id,
        version=version.version,
        is_current=version.version == battery.current_version,
        name=version.name,
        description=version.description,
        tasks=_tasks(version.tasks),
        estimated_minutes=version.estimated_minutes,
        created_at=version.created_at,
        created_by=version.created_by,
    )


def _task_specs(tasks: list[BatteryTaskIn] | None) -> list[service.TaskSpec] | None:
    if tasks is None:
        return None
    return [service.TaskSpec(module_id=task.module_id, config=task.config) for task in tasks]


async def get_version_page_params(
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 20,
    sort: Annotated[str | None, Query(max_length=64)] = None,
    order: Annotated[SortOrder, Query()] = "desc",
) -> PageParams:
    """The list parameters, newest first unless `order=asc`."""
    return PageParams(page=page, per_page=per_page, sort=sort, order=order)


@router.get("", responses=error_responses(404))
async def list_batteries(
    principal: CurrentUser,
    session: SessionDep,
    page: PageParamsDep,
    study_id: uuid.UUID | None = None,
    include_archived: bool = False,
) -> Page[BatteryRead]:
    """Batteries of a study (or of every study the caller can see), with their current content.
    `sort` = `name` (default), `created_at`, `updated_at`."""
    rows, pagination = await service.list_batteries(
        session, principal, page, study_id=study_id, include_archived=include_archived
    )
    return Page[BatteryRead](
        data=[_read(battery, version) for battery, version in rows], pagination=pagination
    )


@router.post(
    "", status_code=status.HTTP_201_CREATED, responses={**error_responses(404), **_CONFLICT}
)
async def create_battery(
    body: BatteryCreate, principal: CurrentUser, session: SessionDep, context: ActorContextDep
) -> BatteryRead:
    """Version 1 of a new battery; task configurations are stored with the defaults merged."""
    battery, version = await service.create_battery(
        session,
        context,
        principal,
        body.study_id,
        service.BatteryFields(
            name=body.name,
            description=body.description,
            tasks=_task_specs(body.tasks),
            estimated_minutes=body.estimated_minutes,
        ),
    )
    return _read(battery, version)


@router.get("/{battery_id:uuid}")
async def get_battery(
    battery_id: uuid.UUID, principal: CurrentUser, session: SessionDep
) -> BatteryRead:
    battery, version = await service.get_battery(session, principal, battery_id)
    return _read(battery, version)


@router.patch("/{battery_id:uuid}", responses=_CONFLICT)
async def update_battery(
    battery_id: uuid.UUID,
    body: BatteryUpdate,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
) -> BatteryRead:
    """Change any of name, description, tasks (the whole list), estimated_minutes. An effective
    change creates the next version; sending the current content creates none."""
    provided = body.model_fields_set - {"reason"}
    battery, version = await service.update_battery(
        session,
        context,
        principal,
        battery_id,
        service.BatteryFields(
            name=body.name,
            description=body.description,
            tasks=_task_specs(body.tasks),
            estimated_minutes=body.estimated_minutes,
            provided=set(provided),
        ),
        reason=body.reason,
    )
    return _read(battery, version)


@router.delete("/{battery_id:uuid}", status_code=status.HTTP_204_NO_CONTENT, responses=_CONFLICT)
async def archive_battery(
    battery_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
    reason: Annotated[str | None, Query(max_length=1000)] = None,
) -> None:
    """Archive: the battery leaves the lists; its versions and the sessions that ran them stay."""
    await service.archive_battery(session, context, principal, battery_id, reason=reason)


@router.get("/{battery_id:uuid}/versions")
async def list_versions(
    battery_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    page: Annotated[PageParams, Depends(get_version_page_params)],
) -> Page[BatteryVersionRead]:
    """Every version, newest first; `sort` = `version` (default) or `created_at`."""
    battery, versions, pagination = await service.list_versions(
        session, principal, battery_id, page
    )
    return Page[BatteryVersionRead](
        data=[_version_read(battery, version) for version in versions], pagination=pagination
    )


@router.get("/{battery_id:uuid}/versions/{version:int}")
async def get_version(
    battery_id: uuid.UUID, version: int, principal: CurrentUser, session: SessionDep
) -> BatteryVersionRead:
    battery, row = await service.get_version(session, principal, battery_id, version)
    return _version_read(battery, row)
