"""REDCap (docs/redcap.md): a study's configuration, connection test, push log and sync;
`configure_study` throughout. `site_id` (query) addresses a site's own project."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Query, Response, status

from app.api.dependencies import (
    ActorContextDep,
    CurrentUser,
    EncryptorDep,
    PageParamsDep,
    RequestAuditContextDep,
    SessionDep,
    SettingsDep,
)
from app.api.openapi import error_responses
from app.core.security import FieldEncryptor
from app.models.audit import ActorType
from app.models.outbox import DeliveryStatus
from app.models.redcap import RedcapProject
from app.schemas.common import Page
from app.schemas.outbox import DeliveryAttemptRead
from app.schemas.redcap import (
    ConnectionTestRead,
    ImportedRowRead,
    ImportParticipantsRead,
    ImportParticipantsRequest,
    RedcapConfigRead,
    RedcapConfigWrite,
    RedcapDeliveryRead,
    SyncRead,
)
from app.services.redcap import deliveries as delivery_service
from app.services.redcap import participants as participant_import
from app.services.redcap import projects as service
from app.services.redcap import trigger as trigger_service

router = APIRouter(prefix="/redcap/{study_id:uuid}", tags=["redcap"])
# REDCap's Data Entry Trigger: no sign-in, the URL's token is the credential.
trigger_router = APIRouter(prefix="/redcap/trigger", tags=["redcap"])

SiteQuery = Annotated[
    uuid.UUID | None, Query(description="a site's own project instead of the study's")
]


def _config_read(project: RedcapProject, encryptor: FieldEncryptor) -> RedcapConfigRead:
    return RedcapConfigRead(
        id=project.id,
        study_id=project.study_id,
        site_id=project.site_id,
        api_url=project.api_url,
        token_set=True,
        record_id_field=project.record_id_field,
        field_mapping={str(k): str(v) for k, v in project.field_mapping.items()},
        event_mapping={str(k): str(v) for k, v in project.event_mapping.items()},
        enabled=project.enabled,
        longitudinal=project.longitudinal,
        project_title=project.project_title,
        redcap_version=project.redcap_version,
        checked_at=project.checked_at,
        trigger_path=service.trigger_path(encryptor, project),
        created_at=project.created_at,
        updated_at=project.updated_at,
    )


def _push_read(entry: delivery_service.PushEntry) -> RedcapDeliveryRead:
    delivery, event = entry.delivery, entry.event
    assert delivery.redcap_project_id is not None
    payload = event.payload
    return RedcapDeliveryRead(
        id=delivery.id,
        config_id=delivery.redcap_project_id,
        event_id=event.id,
        event_type=event.type,
        session_id=str(payload["session_id"]) if payload.get("session_id") else None,
        participant_code=str(payload["participant_code"])
        if payload.get("participant_code")
        else None,
        status=delivery.status,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at,
        last_attempt_at=delivery.last_attempt_at,
        last_status_code=delivery.last_status_code,
        last_duration_ms=delivery.last_duration_ms,
        last_error=delivery.last_error,
        delivered_at=delivery.delivered_at,
        created_at=delivery.created_at,
        attempt_log=[DeliveryAttemptRead.model_validate(attempt) for attempt in entry.attempts],
    )


@router.get("/config")
async def get_config(
    study_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    encryptor: EncryptorDep,
    site_id: SiteQuery = None,
) -> RedcapConfigRead:
    """The configuration, without the token (`token_set` says one is stored)."""
    project = await service.get_project(session, principal, study_id, site_id)
    return _config_read(project, encryptor)


@router.put("/config", responses=error_responses(422))
async def put_config(
    study_id: uuid.UUID,
    body: RedcapConfigWrite,
    principal: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    encryptor: EncryptorDep,
    context: ActorContextDep,
    response: Response,
    site_id: SiteQuery = None,
) -> RedcapConfigRead:
    """Create (201) or replace (200) the configuration after checking it against the REDCap
    project: fields, record id field or events the project lacks are a 422 naming them
    (`details.reason` `REDCAP_MAPPING_UNKNOWN`); a project that cannot be reached or refuses
    the token is a 422 too (`REDCAP_UNAVAILABLE`, `REDCAP_ERROR`, with REDCap's words)."""
    project, created = await service.save_project(
        session,
        settings,
        encryptor,
        context,
        principal,
        study_id,
        site_id,
        service.ProjectInput(
            api_url=body.api_url,
            api_token=body.api_token.get_secret_value() if body.api_token else None,
            record_id_field=body.record_id_field,
            field_mapping=body.field_mapping,
            event_mapping=body.event_mapping,
            enabled=body.enabled,
        ),
    )
    if created:
        response.status_code = status.HTTP_201_CREATED
    return _config_read(project, encryptor)


@router.post("/config/rotate-trigger")
async def rotate_trigger(
    study_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    encryptor: EncryptorDep,
    context: ActorContextDep,
    site_id: SiteQuery = None,
) -> RedcapConfigRead:
    """A new Data Entry Trigger URL (`trigger_path`); the old one stops working at once."""
    project = await service.rotate_trigger(
        session, settings, encryptor, context, principal, study_id, site_id
    )
    return _config_read(project, encryptor)


@router.post("/test")
async def test_connection(
    study_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    encryptor: EncryptorDep,
    site_id: SiteQuery = None,
) -> ConnectionTestRead:
    """Call the configured project: REDCap's version and the project's title, or why not."""
    facts, error = await service.test_connection(
        session, settings, encryptor, principal, study_id, site_id
    )
    if facts is None:
        return ConnectionTestRead(ok=False, error=error)
    return ConnectionTestRead(
        ok=True,
        redcap_version=facts.redcap_version,
        project_title=facts.project_title,
        project_id=facts.project_id,
        longitudinal=facts.longitudinal,
    )


@router.post("/sync", status_code=status.HTTP_202_ACCEPTED)
async def sync(
    study_id: uuid.UUID, principal: CurrentUser, session: SessionDep, context: ActorContextDep
) -> SyncRead:
    """Send the failed and dead pushes again now, with a fresh allowance of attempts."""
    queued = await delivery_service.sync_pending(session, context, principal, study_id)
    return SyncRead(queued=queued)


@router.get("/log")
async def push_log(
    study_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    page: PageParamsDep,
    status_filter: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
) -> Page[RedcapDeliveryRead]:
    """Every push of the study's sessions (all its projects), with every attempt and REDCap's
    own error text (sort: `created_at`, `last_attempt_at`, `status`)."""
    rows, pagination = await delivery_service.list_pushes(
        session, principal, study_id, page, status_filter
    )
    return Page[RedcapDeliveryRead](data=[_push_read(row) for row in rows], pagination=pagination)


@router.post("/import-participants", responses=error_responses(422))
async def import_participants(
    study_id: uuid.UUID,
    body: ImportParticipantsRequest,
    principal: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    encryptor: EncryptorDep,
    context: ActorContextDep,
    site_id: SiteQuery = None,
) -> ImportParticipantsRead:
    """Export the project's records (narrowed by an event or a field's value) and create or
    update a participant for each (its record id the participant's code; a site's project
    enrolls at that site). New participants get their visits planned. Every record is in the
    report as created, updated or skipped (with why)."""
    result = await participant_import.import_participants(
        session,
        settings,
        encryptor,
        context,
        principal,
        study_id,
        participant_import.ImportRequest(
            site_id=site_id,
            event=body.event,
            filter_field=body.filter_field,
            filter_value=body.filter_value,
            field_mapping={str(key): value for key, value in body.field_mapping.items()},
        ),
    )
    return ImportParticipantsRead(
        created=result.count(participant_import.RowStatus.CREATED),
        updated=result.count(participant_import.RowStatus.UPDATED),
        skipped=result.count(participant_import.RowStatus.SKIPPED),
        rows=[_imported_row(row) for row in result.rows],
    )


def _imported_row(row: participant_import.ImportedRow) -> ImportedRowRead:
    return ImportedRowRead(
        record=row.record,
        status=row.status.value,
        participant_id=row.participant_id,
        message=row.message,
    )


FormField = Annotated[str | None, Form(max_length=500)]


@trigger_router.post("/{token}", responses=error_responses(403, 404, 409, 422))
async def data_entry_trigger(
    token: str,
    session: SessionDep,
    settings: SettingsDep,
    encryptor: EncryptorDep,
    context: RequestAuditContextDep,
    project_id: FormField = None,
    record: FormField = None,
    instrument: FormField = None,
    redcap_event_name: FormField = None,
    redcap_url: FormField = None,
) -> ImportedRowRead:
    """REDCap's Data Entry Trigger (form fields, as REDCap posts them): imports the saved record
    as a participant when it is new. The token of the URL (from `GET /{study_id}/config`,
    `trigger_path`) is the credential; `project_id` must be the configured project's, and
    `redcap_url`, when posted, on the configured REDCap server (403 otherwise)."""
    row = await trigger_service.handle_trigger(
        session,
        settings,
        encryptor,
        context.as_actor(ActorType.SYSTEM, "redcap-trigger"),
        token,
        trigger_service.TriggerPost(
            project_id=project_id,
            record=record,
            instrument=instrument,
            redcap_event_name=redcap_event_name,
            redcap_url=redcap_url,
        ),
    )
    return _imported_row(row)
