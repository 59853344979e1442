"""A study's REDCap configuration: the study's project and optional per-site overrides.

Every route needs `configure_study` (docs/roles.md). Saving checks the configuration against the
project itself (version, project information, metadata, events): a mapped field, the record id
field or an event REDCap does not know is a 422 naming them, so a mistake shows when it is made,
not at the first push. The token is write-only: stored encrypted, kept when a later save leaves
it out, never returned, logged or written to the audit trail.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.core.errors import NotFoundError, ValidationFailedError
from app.core.security import FieldEncryptor, hash_secret
from app.models.redcap import RedcapProject
from app.models.study import Site, Study
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about, record_change
from app.services.policy import Capability, require_study_capability
from app.services.principals import StaffPrincipal
from app.services.redcap import client
from app.services.webhooks.targets import TargetRefusedError, redacted_url, resolve_target


@dataclass(frozen=True, slots=True)
class ProjectInput:
    api_url: str
    api_token: str | None
    record_id_field: str
    field_mapping: Mapping[str, str]
    event_mapping: Mapping[str, str]
    enabled: bool


TRIGGER_PATH = "/api/redcap/trigger/"


def new_trigger_token() -> str:
    """256 random bits, URL-safe: the Data Entry Trigger's credential."""
    return secrets.token_urlsafe(32)


def set_trigger_token(
    settings: Settings, encryptor: FieldEncryptor, project: RedcapProject, token: str
) -> None:
    project.trigger_token_hash = hash_secret(settings, token)
    project.trigger_token_encrypted = encryptor.encrypt(token)


def trigger_path(encryptor: FieldEncryptor, project: RedcapProject) -> str | None:
    """The path REDCap's Data Entry Trigger posts to; None when no key decrypts it."""
    try:
        return TRIGGER_PATH + encryptor.decrypt(project.trigger_token_encrypted)
    except ValueError:
        return None


def project_snapshot(project: RedcapProject) -> dict[str, Any]:
    """What the audit trail records: never the token."""
    return {
        "site_id": str(project.site_id) if project.site_id else None,
        "api_url": redacted_url(project.api_url),
        "record_id_field": project.record_id_field,
        "field_mapping": dict(sorted(project.field_mapping.items())),
        "event_mapping": dict(sorted(project.event_mapping.items())),
        "enabled": project.enabled,
    }


def _subject(project: RedcapProject) -> AuditSubject:
    return AuditSubject.configuration("redcap_project", project.id, project.study_id)


def _refused(reason: str, message: str, errors: list[dict[str, str]]) -> ValidationFailedError:
    return ValidationFailedError(message, details={"reason": reason, "errors": errors})


async def _check_site(session: AsyncSession, study_id: uuid.UUID, site_id: uuid.UUID) -> None:
    site = await session.get(Site, site_id)
    if site is None or site.study_id != study_id:
        raise NotFoundError("Site not found in this study")


async def _find(
    session: AsyncSession, study_id: uuid.UUID, site_id: uuid.UUID | None
) -> RedcapProject | None:
    site_filter = (
        RedcapProject.site_id.is_(None) if site_id is None else RedcapProject.site_id == site_id
    )
    found: RedcapProject | None = await session.scalar(
        select(RedcapProject)
        .where(RedcapProject.study_id == study_id, site_filter)
        .order_by(RedcapProject.created_at)
        .limit(1)
        .with_for_update()
    )
    return found


async def get_project(
    session: AsyncSession,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    site_id: uuid.UUID | None = None,
) -> RedcapProject:
    await require_study_capability(session, principal, study_id, Capability.CONFIGURE_STUDY)
    if site_id is not None:
        await _check_site(session, study_id, site_id)
    project = await _find(session, study_id, site_id)
    if project is None:
        raise NotFoundError(
            "REDCap is not configured for this site" if site_id else "REDCap is not configured"
        )
    return project


async def _checked_url(settings: Settings, url: str) -> None:
    try:
        await resolve_target(url, settings)
    except TargetRefusedError as exc:
        raise _refused(
            "URL_NOT_ALLOWED", str(exc), [{"field": "api_url", "message": str(exc)}]
        ) from exc


async def describe(settings: Settings, url: str, token: str) -> client.ProjectFacts:
    """The project's facts, fetched in a worker thread (PyCap blocks)."""
    return await asyncio.to_thread(
        client.describe_project, url, token, settings.REDCAP_TIMEOUT_SECONDS
    )


def check_against_project(data: ProjectInput, facts: client.ProjectFacts) -> None:
    """Refuse a configuration that names fields or events the project does not have."""
    errors: list[dict[str, str]] = []
    if data.record_id_field not in facts.fields:
        errors.append(
            {
                "field": "record_id_field",
                "message": f"'{data.record_id_field}' is not a field of the REDCap project",
            }
        )
    elif facts.record_id_field is not None and data.record_id_field != facts.record_id_field:
        errors.append(
            {
                "field": "record_id_field",
                "message": f"the project's record id field is '{facts.record_id_field}'",
            }
        )
    unknown = sorted(set(data.field_mapping.values()) - facts.fields)
    for field in unknown:
        keys = sorted(key for key, value in data.field_mapping.items() if value == field)
        errors.append(
            {
                "field": f"field_mapping.{keys[0]}",
                "message": f"'{field}' is not a field of the REDCap project",
            }
        )
    if data.event_mapping and not facts.longitudinal:
        errors.append(
            {
                "field": "event_mapping",
                "message": "the REDCap project is not longitudinal: it has no events to map to",
            }
        )
    elif facts.longitudinal:
        if not data.event_mapping:
            errors.append(
                {
                    "field": "event_mapping",
                    "message": "the REDCap project is longitudinal: map each visit to an event",
                }
            )
        for visit, event in sorted(data.event_mapping.items()):
            if event not in facts.events:
                errors.append(
                    {
                        "field": f"event_mapping.{visit}",
                        "message": f"'{event}' is not an event of the REDCap project",
                    }
                )
                continue
            # Each mapped field's instrument must be collected on the event.
            collected = facts.event_forms.get(event, frozenset())
            for field in sorted(set(data.field_mapping.values())):
                form = facts.field_forms.get(field)
                if form is not None and form not in collected:
                    errors.append(
                        {
                            "field": f"event_mapping.{visit}",
                            "message": f"'{field}' (instrument '{form}') is not collected on "
                            f"event '{event}'",
                        }
                    )
    if errors:
        names = ", ".join(
            error["message"].split("'")[1] for error in errors if error["message"].count("'") >= 2
        )
        message = "The configuration does not match the REDCap project"
        raise _refused(
            "REDCAP_MAPPING_UNKNOWN", f"{message}: {names}" if names else message, errors
        )


async def save_project(
    session: AsyncSession,
    settings: Settings,
    encryptor: FieldEncryptor,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    site_id: uuid.UUID | None,
    data: ProjectInput,
) -> tuple[RedcapProject, bool]:
    """Create or replace the study's (or a site's) configuration; (row, created)."""
    await require_study_capability(session, principal, study_id, Capability.CONFIGURE_STUDY)
    if site_id is not None:
        await _check_site(session, study_id, site_id)
    project = await _find(session, study_id, site_id)
    stored: str | None = None
    if project is not None:
        try:
            stored = encryptor.decrypt(project.token_encrypted)
        except ValueError:
            stored = None
    token = data.api_token or stored
    if token is None:
        if project is None:
            raise _refused(
                "TOKEN_REQUIRED",
                "The API token is required when REDCap is first configured",
                [{"field": "api_token", "message": "required the first time"}],
            )
        raise _refused(
            "TOKEN_UNREADABLE",
            "The stored token cannot be decrypted with ENCRYPTION_KEYS; send it again",
            [{"field": "api_token", "message": "send the token again"}],
        )
    await _checked_url(settings, data.api_url)
    try:
        facts = await describe(settings, data.api_url, token)
    except client.RedcapCallError as exc:
        raise _refused(
            "REDCAP_UNAVAILABLE" if exc.failure is not client.Failure.REDCAP else "REDCAP_ERROR",
            f"The REDCap project could not be checked: {exc.message}",
            [{"field": "api_url", "message": exc.message}],
        ) from exc
    check_against_project(data, facts)

    created = project is None
    before = project_snapshot(project) if project is not None else None
    token_changed = data.api_token is not None and data.api_token != stored
    if project is None:
        project = RedcapProject(id=uuid.uuid4(), study_id=study_id, site_id=site_id)
        set_trigger_token(settings, encryptor, project, new_trigger_token())
        session.add(project)
    project.api_url = data.api_url
    if data.api_token is not None:
        project.token_encrypted = encryptor.encrypt(data.api_token)
    project.record_id_field = data.record_id_field
    project.field_mapping = dict(data.field_mapping)
    project.event_mapping = dict(data.event_mapping)
    project.enabled = data.enabled
    project.longitudinal = facts.longitudinal
    project.field_forms = {
        name: facts.field_forms.get(name, "") for name in sorted(set(data.field_mapping.values()))
    }
    project.repeating_forms = [
        {"event": event, "form": form} for event, form in sorted(facts.repeating)
    ]
    project.project_title = facts.project_title
    project.redcap_version = facts.redcap_version
    project.redcap_project_ref = facts.project_id
    project.checked_at = utcnow()
    if site_id is None:
        # The study's flag says whether its own project is fed.
        study = await session.get(Study, study_id)
        assert study is not None  # the capability check found it
        study.redcap_enabled = data.enabled
    await session.flush()
    after = {**project_snapshot(project), "token_changed": token_changed}
    if before is None:
        await record_about(session, context, _subject(project), "redcap.configure", after=after)
    else:
        await record_change(
            session,
            context,
            _subject(project),
            "redcap.configure",
            {**before, "token_changed": False},
            after,
        )
    return project, created


async def rotate_trigger(
    session: AsyncSession,
    settings: Settings,
    encryptor: FieldEncryptor,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    site_id: uuid.UUID | None,
) -> RedcapProject:
    """A new Data Entry Trigger URL; the old one stops working at once."""
    project = await get_project(session, principal, study_id, site_id)
    set_trigger_token(settings, encryptor, project, new_trigger_token())
    await session.flush()
    await record_about(session, context, _subject(project), "redcap.trigger_rotated")
    return project


async def test_connection(
    session: AsyncSession,
    settings: Settings,
    encryptor: FieldEncryptor,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    site_id: uuid.UUID | None,
) -> tuple[client.ProjectFacts | None, str | None]:
    """Call the configured project: its facts, or why that failed."""
    project = await get_project(session, principal, study_id, site_id)
    try:
        token = encryptor.decrypt(project.token_encrypted)
    except ValueError:
        return None, "The stored token cannot be decrypted with ENCRYPTION_KEYS; save it again"
    try:
        await resolve_target(project.api_url, settings)
        return await describe(settings, project.api_url, token), None
    except TargetRefusedError as exc:
        return None, str(exc)
    except client.RedcapCallError as exc:
        return None, exc.message
