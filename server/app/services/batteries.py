"""Batteries of tasks and their immutable versions (docs/batteries.md, batteries).

A battery is a named, ordered list of catalogue tasks. Its content (name, description, tasks with
their effective configurations, estimated minutes) lives in `BatteryVersion` rows that are never
changed: every effective change writes version n + 1 and moves `Battery.current_version`, so a
session that ran version n can always be scored and exported against exactly what it ran.
"""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalogue import (
    MODULE_ALIASES,
    MODULE_IDS,
    FieldError,
    TaskConfigError,
    UnknownModuleError,
    resolve_module_id,
    validate_task_config,
)
from app.core.clock import utcnow
from app.core.errors import ConflictError, NotFoundError, ValidationFailedError
from app.models.battery import Battery, BatteryVersion
from app.models.study import Study, StudyStatus
from app.schemas.batteries import MAX_BATTERY_TASKS
from app.schemas.common import DB_INTEGER_MAX, PageParams, Pagination
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

"""Tasks per battery: far above any real session, low enough to bound validation work."""


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One task as a request gives it: a module id (or alias) and a partial configuration."""

    module_id: str
    config: dict[str, Any] | None = None


@dataclass(slots=True)
class BatteryFields:
    """The content fields of a write; `provided` names those a PATCH sent."""

    name: str | None = None
    description: str | None = None
    tasks: Sequence[TaskSpec] | None = None
    estimated_minutes: int | None = None
    provided: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Content:
    name: str
    description: str | None
    tasks: list[dict[str, Any]]
    estimated_minutes: int | None


def _subject(battery: Battery) -> AuditSubject:
    return AuditSubject.configuration("battery", battery.id, battery.study_id)


def version_snapshot(version: BatteryVersion) -> dict[str, Any]:
    """What a version holds, as the audit trail records it."""
    return {
        "version": version.version,
        "name": version.name,
        "description": version.description,
        "tasks": version.tasks,
        "estimated_minutes": version.estimated_minutes,
    }


def _content_of(version: BatteryVersion) -> _Content:
    return _Content(
        name=version.name,
        description=version.description,
        tasks=version.tasks,
        estimated_minutes=version.estimated_minutes,
    )


def _unknown_module_message(module_id: str) -> str:
    close = difflib.get_close_matches(module_id, [*MODULE_IDS, *MODULE_ALIASES], n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"Unknown module '{module_id}'{hint}"


def _effective_tasks(tasks: Sequence[TaskSpec], errors: list[FieldError]) -> list[dict[str, Any]]:
    """Each task with its canonical module id and effective configuration.

    Appends every problem to `errors`, named `tasks.<index>.module_id` or
    `tasks.<index>.config[.<parameter>]`.
    """
    if not tasks:
        errors.append(FieldError(field="tasks", message="A battery needs at least one task"))
        return []
    if len(tasks) > MAX_BATTERY_TASKS:
        errors.append(
            FieldError(field="tasks", message=f"A battery has at most {MAX_BATTERY_TASKS} tasks")
        )
        return []
    effective: list[dict[str, Any]] = []
    first_index: dict[str, int] = {}
    for index, task in enumerate(tasks):
        prefix = f"tasks.{index}"
        try:
            module_id = resolve_module_id(task.module_id)
        except UnknownModuleError:
            errors.append(
                FieldError(
                    field=f"{prefix}.module_id", message=_unknown_module_message(task.module_id)
                )
            )
            continue
        if module_id in first_index:
            # Submissions key task results by module id (one result per task and session).
            errors.append(
                FieldError(
                    field=f"{prefix}.module_id",
                    message=(
                        f"Module '{module_id}' is already task {first_index[module_id]}; "
                        "a battery runs each module once"
                    ),
                )
            )
        else:
            first_index[module_id] = index
        try:
            config = validate_task_config(module_id, task.config or {})
        except TaskConfigError as exc:
            errors.extend(
                FieldError(
                    field=f"{prefix}.config.{error['field']}"
                    if error["field"]
                    else f"{prefix}.config",
                    message=error["message"],
                )
                for error in exc.errors
            )
            continue
        effective.append({"module_id": module_id, "config": config})
    return effective


def _checked_name(name: str | None, errors: list[FieldError]) -> str:
    stripped = (name or "").strip()
    if not stripped:
        errors.append(FieldError(field="name", message="The name cannot be empty"))
    return stripped


def _raise_if_invalid(errors: list[FieldError]) -> None:
    if errors:
        raise ValidationFailedError(
            "The battery is not valid", details={"errors": [dict(error) for error in errors]}
        )


async def _require_study_open(session: AsyncSession, study_id: uuid.UUID) -> None:
    study = await session.get(Study, study_id)
    if study is not None and study.status == StudyStatus.ARCHIVED:
        raise ConflictError("The batteries of an archived study cannot be changed")


async def _version_row(
    session: AsyncSession, battery_id: uuid.UUID, version: int
) -> BatteryVersion | None:
    row: BatteryVersion | None = await session.scalar(
        select(BatteryVersion).where(
            BatteryVersion.battery_id == battery_id, BatteryVersion.version == version
        )
    )
    return row


async def get_battery_version(
    session: AsyncSession, battery_id: uuid.UUID, version: int | None = None
) -> tuple[Battery, BatteryVersion]:
    """The battery and one of its versions (the current one when `version` is None).

    No access check: the caller checks the study. Archived batteries are returned too (their
    `archived` flag set), so late submissions against them keep working; whether a new session
    may start on one is the caller's decision. NotFoundError when either does not exist.
    """
    battery = await session.get(Battery, battery_id)
    if battery is None:
        raise NotFoundError("Battery not found")
    wanted = battery.current_version if version is None else version
    # A number no INTEGER column holds names no version (the database would refuse the query).
    row = await _version_row(session, battery.id, wanted) if 1 <= wanted <= DB_INTEGER_MAX else None
    if row is None:
        raise NotFoundError(
            "Battery version not found", details={"battery_id": str(battery_id), "version": wanted}
        )
    return battery, row


async def _battery_for(
    session: AsyncSession,
    principal: StaffPrincipal,
    battery_id: uuid.UUID,
    capability: Capability,
    *,
    lock: bool = False,
) -> Battery:
    return await study_row_for(session, principal, Battery, battery_id, capability, lock=lock)


async def create_battery(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    fields: BatteryFields,
) -> tuple[Battery, BatteryVersion]:
    await require_study_capability(session, principal, study_id, Capability.CONFIGURE_STUDY)
    await _require_study_open(session, study_id)
    errors: list[FieldError] = []
    name = _checked_name(fields.name, errors)
    tasks = _effective_tasks(fields.tasks or [], errors)
    _raise_if_invalid(errors)
    battery = Battery(
        id=uuid.uuid4(),
        study_id=study_id,
        name=name,
        description=fields.description,
        current_version=1,
        archived=False,
    )
    session.add(battery)
    await session.flush()
    version = BatteryVersion(
        id=uuid.uuid4(),
        battery_id=battery.id,
        version=1,
        name=name,
        description=fields.description,
        tasks=tasks,
        estimated_minutes=fields.estimated_minutes,
        created_at=utcnow(),
        created_by=principal.user_id,
    )
    session.add(version)
    await session.flush()
    await record_about(
        session, context, _subject(battery), "battery.create", after=version_snapshot(version)
    )
    return battery, version


async def update_battery(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    battery_id: uuid.UUID,
    fields: BatteryFields,
    reason: str | None = None,
) -> tuple[Battery, BatteryVersion]:
    """Write a new version when the content changes; a PATCH that changes nothing writes none."""
    battery = await _battery_for(
        session, principal, battery_id, Capability.CONFIGURE_STUDY, lock=True
    )
    if battery.archived:
        raise ConflictError("An archived battery cannot be changed")
    await _require_study_open(session, battery.study_id)
    _, current = await get_battery_version(session, battery.id)
    before = _content_of(current)
    errors: list[FieldError] = []
    name = _checked_name(fields.name, errors) if "name" in fields.provided else before.name
    if "tasks" in fields.provided:
        if fields.tasks is None:
            errors.append(FieldError(field="tasks", message="A battery needs at least one task"))
            tasks = before.tasks
        else:
            tasks = _effective_tasks(fields.tasks, errors)
    else:
        # Tasks not sent are carried over as stored, even if the catalogue has changed since.
        tasks = before.tasks
    _raise_if_invalid(errors)
    after = _Content(
        name=name,
        description=fields.description if "description" in fields.provided else before.description,
        tasks=tasks,
        estimated_minutes=(
            fields.estimated_minutes
            if "estimated_minutes" in fields.provided
            else before.estimated_minutes
        ),
    )
    if after == before:
        return battery, current
    version = BatteryVersion(
        id=uuid.uuid4(),
        battery_id=battery.id,
        version=current.version + 1,
        name=after.name,
        description=after.description,
        tasks=after.tasks,
        estimated_minutes=after.estimated_minutes,
        created_at=utcnow(),
        created_by=principal.user_id,
    )
    session.add(version)
    battery.current_version = version.version
    battery.name = after.name
    battery.description = after.description
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ConflictError("The battery was changed at the same time; retry") from exc
    await record_about(
        session,
        context,
        _subject(battery),
        "battery.update",
        before=version_snapshot(current),
        after=version_snapshot(version),
        reason=reason,
    )
    return battery, version


async def archive_battery(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    battery_id: uuid.UUID,
    reason: str | None = None,
) -> None:
    """Take the battery out of the lists; its versions stay, and so do the sessions that ran them.

    Archiving an archived battery changes nothing and records nothing.
    """
    battery = await _battery_for(
        session, principal, battery_id, Capability.CONFIGURE_STUDY, lock=True
    )
    if battery.archived:
        return
    await _require_study_open(session, battery.study_id)
    battery.archived = True
    await record_about(
        session,
        context,
        _subject(battery),
        "battery.archive",
        before={"archived": False, "current_version": battery.current_version},
        after={"archived": True, "current_version": battery.current_version},
        reason=reason,
    )


async def get_battery(
    session: AsyncSession, principal: StaffPrincipal, battery_id: uuid.UUID
) -> tuple[Battery, BatteryVersion]:
    battery = await _battery_for(session, principal, battery_id, Capability.READ)
    return await get_battery_version(session, battery.id)


async def get_version(
    session: AsyncSession, principal: StaffPrincipal, battery_id: uuid.UUID, version: int
) -> tuple[Battery, BatteryVersion]:
    battery = await _battery_for(session, principal, battery_id, Capability.READ)
    return await get_battery_version(session, battery.id, version)


async def list_versions(
    session: AsyncSession, principal: StaffPrincipal, battery_id: uuid.UUID, params: PageParams
) -> tuple[Battery, Sequence[BatteryVersion], Pagination]:
    battery = await _battery_for(session, principal, battery_id, Capability.READ)
    versions, pagination = await paginate(
        session,
        select(BatteryVersion).where(BatteryVersion.battery_id == battery.id),
        params,
        sortable={"version": BatteryVersion.version, "created_at": BatteryVersion.created_at},
        default_sort="version",
        tie_breaker=BatteryVersion.version,
    )
    return battery, versions, pagination


async def list_batteries(
    session: AsyncSession,
    principal: StaffPrincipal,
    params: PageParams,
    *,
    study_id: uuid.UUID | None,
    include_archived: bool,
) -> tuple[list[tuple[Battery, BatteryVersion]], Pagination]:
    """Batteries of one study, or of every study the caller can see when `study_id` is None."""
    statement = await limit_to_readable_studies(
        session, principal, select(Battery), Battery.study_id, study_id
    )
    if statement is None:
        return [], Pagination.empty(params)
    if not include_archived:
        statement = statement.where(Battery.archived.is_(False))
    batteries, pagination = await paginate(
        session,
        statement,
        params,
        sortable={
            "name": Battery.name,
            "created_at": Battery.created_at,
            "updated_at": Battery.updated_at,
        },
        default_sort="name",
        tie_breaker=Battery.id,
    )
    if not batteries:
        return [], pagination
    current = (
        await session.scalars(
            select(BatteryVersion)
            .join(
                Battery,
                and_(
                    Battery.id == BatteryVersion.battery_id,
                    Battery.current_version == BatteryVersion.version,
                ),
            )
            .where(Battery.id.in_([battery.id for battery in batteries]))
        )
    ).all()
    by_battery = {version.battery_id: version for version in current}
    return [(battery, by_battery[battery.id]) for battery in batteries], pagination
