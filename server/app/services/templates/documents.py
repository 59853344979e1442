"""A study's configuration to a template document and back.

Applying goes through the ordinary services (studies, batteries, schedules, consent forms) in
the caller's one transaction, so every row is checked and audited exactly as if it had been
made by hand; the first failure rolls everything back and is reported with its JSON path in the
document (`batteries.0.tasks.1.config.n_trials`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalogue import UnknownModuleError, get_module
from app.core.errors import ConflictError, ValidationFailedError
from app.models.battery import Battery, BatteryVersion
from app.models.consent import ConsentForm, ConsentFormStatus
from app.models.redcap import RedcapProject
from app.models.schedule import Schedule, ScheduleEvent, ScheduleVersion
from app.models.study import Site, Study
from app.models.webhook import WebhookSubscription
from app.schemas.schedules import ScheduleEventIn
from app.schemas.templates import (
    TEMPLATE_FORMAT_VERSION,
    StudyTemplate,
    TemplateBattery,
    TemplateConsentForm,
    TemplateEvent,
    TemplateIntegrations,
    TemplateRedcap,
    TemplateSchedule,
    TemplateSite,
    TemplateStudySettings,
    TemplateTask,
    TemplateWebhook,
)
from app.services import batteries, studies
from app.services.audit import AuditContext
from app.services.consent import forms
from app.services.policy import Capability, require_study_capability
from app.services.principals import StaffPrincipal
from app.services.schedules import definitions

# ---------------------------------------------------------------------------------------------
# The document


def template_schema() -> dict[str, Any]:
    """The JSON Schema of the document, generated from the pydantic model."""
    schema = StudyTemplate.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"Metricis study template (format_version {TEMPLATE_FORMAT_VERSION})"
    return schema


def _path(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location)


def _invalid(errors: list[dict[str, str]]) -> ValidationFailedError:
    return ValidationFailedError("The template is not valid", details={"errors": errors})


def parse_template(document: Mapping[str, Any]) -> StudyTemplate:
    """The document checked against the model and its own references; 422 naming each path."""
    try:
        template = StudyTemplate.model_validate(document)
    except ValidationError as exc:
        raise _invalid(
            [{"field": _path(error["loc"]), "message": error["msg"]} for error in exc.errors()]
        ) from exc
    errors: list[dict[str, str]] = []
    if template.schedule is not None:
        for index, event in enumerate(template.schedule.events):
            if event.battery >= len(template.batteries):
                errors.append(
                    {
                        "field": f"schedule.events.{index}.battery",
                        "message": f"There is no battery {event.battery} "
                        f"(the template has {len(template.batteries)})",
                    }
                )
    seen: set[str] = set()
    for index, form in enumerate(template.consent_forms):
        if form.language in seen:
            errors.append(
                {
                    "field": f"consent_forms.{index}.language",
                    "message": f"A form in '{form.language}' is already given",
                }
            )
        seen.add(form.language)
    seen_sites: set[str] = set()
    for index, site in enumerate(template.sites):
        if site.code in seen_sites:
            errors.append(
                {"field": f"sites.{index}.code", "message": f"Site '{site.code}' is repeated"}
            )
        seen_sites.add(site.code)
    if errors:
        raise _invalid(errors)
    return template


# ---------------------------------------------------------------------------------------------
# Export


def _config_overrides(module_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The stored effective configuration minus what the module's defaults already give."""
    try:
        defaults = get_module(module_id).default_config
    except UnknownModuleError:  # a module since left the catalogue: keep everything
        return dict(config)
    return {
        name: value
        for name, value in config.items()
        if name not in defaults or defaults[name] != value
    }


async def _current_batteries(
    session: AsyncSession, study_id: uuid.UUID
) -> list[tuple[Battery, BatteryVersion]]:
    rows = await session.execute(
        select(Battery, BatteryVersion)
        .join(
            BatteryVersion,
            (BatteryVersion.battery_id == Battery.id)
            & (BatteryVersion.version == Battery.current_version),
        )
        .where(Battery.study_id == study_id, Battery.archived.is_(False))
        .order_by(Battery.created_at, Battery.id)
    )
    return [(battery, version) for battery, version in rows]


async def _export_schedule(
    session: AsyncSession, study_id: uuid.UUID, battery_index: Mapping[uuid.UUID, int]
) -> TemplateSchedule | None:
    schedule = await session.scalar(select(Schedule).where(Schedule.study_id == study_id))
    if schedule is None:
        return None
    version = await session.scalar(
        select(ScheduleVersion).where(
            ScheduleVersion.schedule_id == schedule.id,
            ScheduleVersion.version == schedule.current_version,
        )
    )
    assert version is not None
    events = (
        await session.scalars(
            select(ScheduleEvent)
            .where(ScheduleEvent.schedule_version_id == version.id)
            .order_by(ScheduleEvent.position)
        )
    ).all()
    exported: list[TemplateEvent] = []
    for event in events:
        if event.battery_id not in battery_index:
            raise ConflictError(
                f"Schedule event '{event.key}' runs an archived battery; a template can only "
                "refer to the study's current batteries",
                details={"reason": "ARCHIVED_BATTERY_IN_SCHEDULE", "event_key": event.key},
            )
        read = definitions.event_read(event)
        exported.append(
            TemplateEvent(
                key=read.key,
                label=read.label,
                anchor=read.anchor,
                offset_days=read.offset_days,
                window_before_days=read.window_before_days,
                window_after_days=read.window_after_days,
                battery=battery_index[event.battery_id],
                repeat=read.repeat,
                reminders=read.reminders,
            )
        )
    return TemplateSchedule(
        name=version.name,
        description=version.description,
        reminder_quiet_hours=definitions.quiet_hours_of(version),
        events=exported,
    )


async def _export_integrations(session: AsyncSession, study_id: uuid.UUID) -> TemplateIntegrations:
    project = await session.scalar(
        select(RedcapProject).where(
            RedcapProject.study_id == study_id, RedcapProject.site_id.is_(None)
        )
    )
    hooks = (
        await session.scalars(
            select(WebhookSubscription)
            .where(WebhookSubscription.study_id == study_id)
            .order_by(WebhookSubscription.created_at, WebhookSubscription.id)
        )
    ).all()
    return TemplateIntegrations(
        redcap=TemplateRedcap(
            api_url=project.api_url,
            record_id_field=project.record_id_field,
            field_mapping=dict(project.field_mapping),
            event_mapping=dict(project.event_mapping),
            enabled=project.enabled,
        )
        if project is not None
        else None,
        webhooks=[
            TemplateWebhook(
                url=hook.url,
                description=hook.description,
                event_types=list(hook.event_types),
                active=hook.active,
            )
            for hook in hooks
        ],
    )


async def export_study(
    session: AsyncSession, principal: StaffPrincipal, study_id: uuid.UUID
) -> StudyTemplate:
    """The study's current configuration as a template: those who configure the study only
    (the document holds consent texts, reminder wording and integration addresses)."""
    await require_study_capability(session, principal, study_id, Capability.CONFIGURE_STUDY)
    study = await session.get(Study, study_id)
    assert study is not None  # the capability check found it
    sites = (
        await session.scalars(
            select(Site).where(Site.study_id == study_id).order_by(Site.created_at, Site.id)
        )
    ).all()
    current = await _current_batteries(session, study_id)
    battery_index = {battery.id: index for index, (battery, _) in enumerate(current)}
    consent_forms = (
        await session.scalars(
            select(ConsentForm)
            .where(
                ConsentForm.study_id == study_id,
                ConsentForm.status == ConsentFormStatus.PUBLISHED,
            )
            .order_by(ConsentForm.language)
        )
    ).all()
    return StudyTemplate(
        format_version=TEMPLATE_FORMAT_VERSION,
        study=TemplateStudySettings(
            description=study.description,
            consent_mode=study.consent_mode,
            supported_languages=list(study.supported_languages),
            timezone=study.timezone,
            config=dict(study.config),
        ),
        sites=[TemplateSite(code=s.code, name=s.name, timezone=s.timezone) for s in sites],
        batteries=[
            TemplateBattery(
                name=version.name,
                description=version.description,
                estimated_minutes=version.estimated_minutes,
                tasks=[
                    TemplateTask(
                        module_id=task["module_id"],
                        config=_config_overrides(task["module_id"], task["config"]),
                    )
                    for task in version.tasks
                ],
            )
            for _, version in current
        ],
        schedule=await _export_schedule(session, study_id, battery_index),
        consent_forms=[
            TemplateConsentForm.model_validate(
                {
                    "language": form.language,
                    "title": form.title,
                    "content": form.content,
                    "questions": form.questions,
                    "requires_signature": form.requires_signature,
                    "reconsent_required": form.reconsent_required,
                }
            )
            for form in consent_forms
        ],
        integrations=await _export_integrations(session, study_id),
    )


# ---------------------------------------------------------------------------------------------
# Apply


@contextmanager
def _located(prefix: str, renames: Mapping[str, str] | None = None) -> Iterator[None]:
    """A service's 422 with its fields named by their path in the document."""
    try:
        yield
    except ValidationFailedError as exc:
        errors = exc.details.get("errors") if exc.details else None
        if isinstance(errors, list):
            for error in errors:
                if isinstance(error, dict) and isinstance(error.get("field"), str):
                    field = str(error["field"])
                    for old, new in (renames or {}).items():
                        field = field.replace(old, new)
                    error["field"] = f"{prefix}.{field}" if prefix else field
        raise


@dataclass(frozen=True, slots=True)
class TemplateApplication:
    study: Study
    battery_ids: list[uuid.UUID]
    schedule_id: uuid.UUID | None
    consent_form_ids: list[uuid.UUID]
    not_applied: list[str]


_STUDY_FIELDS = {"supported_languages", "timezone", "config", "consent_mode", "description"}


async def apply_template(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    *,
    code: str,
    name: str,
    document: Mapping[str, Any],
) -> TemplateApplication:
    """A new draft study configured as the document says, in the caller's transaction; the
    caller becomes its researcher as with any new study."""
    template = parse_template(document)
    settings = template.study
    try:
        study = await studies.create_study(
            session,
            context,
            principal,
            studies.StudyFields(
                code=code,
                name=name,
                description=settings.description,
                config=dict(settings.config),
                supported_languages=list(settings.supported_languages),
                consent_mode=settings.consent_mode,
                timezone=settings.timezone,
            ),
        )
    except ValidationFailedError as exc:
        for error in (exc.details or {}).get("errors", []):
            if isinstance(error, dict) and error.get("field") in _STUDY_FIELDS:
                error["field"] = f"study.{error['field']}"
        raise
    await session.flush()
    for index, site in enumerate(template.sites):
        with _located(f"sites.{index}"):
            await studies.create_site(
                session,
                context,
                principal,
                study.id,
                code=site.code,
                name=site.name,
                timezone=site.timezone,
            )
    battery_ids: list[uuid.UUID] = []
    for index, battery in enumerate(template.batteries):
        with _located(f"batteries.{index}"):
            row, _ = await batteries.create_battery(
                session,
                context,
                principal,
                study.id,
                batteries.BatteryFields(
                    name=battery.name,
                    description=battery.description,
                    tasks=[
                        batteries.TaskSpec(module_id=task.module_id, config=dict(task.config))
                        for task in battery.tasks
                    ],
                    estimated_minutes=battery.estimated_minutes,
                ),
            )
        battery_ids.append(row.id)
    schedule_id: uuid.UUID | None = None
    if template.schedule is not None:
        events = [
            ScheduleEventIn(
                key=event.key,
                label=event.label,
                anchor=event.anchor,
                offset_days=event.offset_days,
                window_before_days=event.window_before_days,
                window_after_days=event.window_after_days,
                battery_id=battery_ids[event.battery],
                repeat=event.repeat,
                reminders=event.reminders,
            )
            for event in template.schedule.events
        ]
        with _located("schedule", {".battery_id": ".battery"}):
            view = await definitions.create_schedule(
                session,
                context,
                principal,
                study.id,
                definitions.ScheduleFields(
                    name=template.schedule.name,
                    description=template.schedule.description,
                    events=events,
                    reminder_quiet_hours=template.schedule.reminder_quiet_hours,
                ),
            )
        schedule_id = view.schedule.id
    form_ids: list[uuid.UUID] = []
    for index, form in enumerate(template.consent_forms):
        with _located(f"consent_forms.{index}"):
            created = await forms.create_form(
                session,
                context,
                principal,
                study_id=study.id,
                language=form.language,
                fields=forms.FormFields(
                    title=form.title,
                    content=form.content,
                    questions=[question.model_dump(mode="json") for question in form.questions],
                    requires_signature=form.requires_signature,
                    reconsent_required=form.reconsent_required,
                ),
            )
            await forms.publish_form(session, context, principal, created.id)
        form_ids.append(created.id)
    not_applied: list[str] = []
    if template.integrations.redcap is not None:
        not_applied.append("integrations.redcap")
    if template.integrations.webhooks:
        not_applied.append("integrations.webhooks")
    return TemplateApplication(study, battery_ids, schedule_id, form_ids, not_applied)
