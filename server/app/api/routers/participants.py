from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from app.api.dependencies import (
    ActorContextDep,
    CurrentUser,
    EncryptorDep,
    PageParamsDep,
    SessionDep,
    SettingsDep,
    SiteQuery,
    StorageDep,
)
from app.api.openapi import error_responses
from app.core.security import FieldEncryptor
from app.models.participant import Participant, ParticipantStatus
from app.models.study import Study
from app.schemas.common import Page
from app.schemas.participants import (
    AccessCodeRead,
    ParticipantCreate,
    ParticipantRead,
    ParticipantUpdate,
    WithdrawRequest,
)
from app.services import participants as service
from app.services.policy import StudyAccess

router = APIRouter(prefix="/participants", tags=["participants"])


def _read(
    participant: Participant, encryptor: FieldEncryptor, access: StudyAccess | None
) -> ParticipantRead:
    contact = service.contact_details(participant, encryptor, access)
    return ParticipantRead(
        id=participant.id,
        study_id=participant.study_id,
        participant_id=participant.participant_code,
        site_id=participant.site_id,
        email=contact.email,
        phone=contact.phone,
        enrollment_date=participant.enrollment_date,
        status=participant.status,
        actor=participant.actor,
        language=participant.language,
        timezone=participant.timezone,
        anchor_date=participant.anchor_date,
        withdrawn_at=participant.withdrawn_at,
        withdrawal_scope=participant.withdrawal_scope,
        has_access_code=participant.access_code_hash is not None,
        created_at=participant.created_at,
        updated_at=participant.updated_at,
    )


def _fields(body: ParticipantCreate | ParticipantUpdate) -> service.ParticipantFields:
    return service.ParticipantFields(
        participant_code=body.participant_id,
        site=body.site_id,
        email=str(body.email) if body.email else None,
        phone=body.phone,
        enrollment_date=body.enrollment_date,
        status=body.status,
        actor=body.actor,
        language=body.language,
        timezone=body.timezone,
        anchor_date=body.anchor_date,
    )


@router.get("", responses=error_responses(404))
async def list_participants(
    principal: CurrentUser,
    session: SessionDep,
    encryptor: EncryptorDep,
    page: PageParamsDep,
    study_id: uuid.UUID | None = None,
    status: ParticipantStatus | None = None,
    site_id: SiteQuery = None,
    q: Annotated[str | None, Query(max_length=64, description="Participant code contains")] = None,
) -> Page[ParticipantRead]:
    rows, pagination, access = await service.list_participants(
        session, principal, page, study_id=study_id, status=status, site=site_id, q=q
    )
    # `access` is None for administrators, who see every contact detail.
    return Page[ParticipantRead](
        data=[
            _read(row, encryptor, access.get(row.study_id) if access is not None else None)
            for row in rows
        ],
        pagination=pagination,
    )


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(404, 409))
async def create_participant(
    body: ParticipantCreate,
    principal: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    encryptor: EncryptorDep,
    context: ActorContextDep,
) -> ParticipantRead:
    participant, access = await service.create_participant(
        session, settings, encryptor, context, principal, body.study_id, _fields(body)
    )
    return _read(participant, encryptor, access)


@router.get("/{participant_id:uuid}")
async def get_participant(
    participant_id: uuid.UUID, principal: CurrentUser, session: SessionDep, encryptor: EncryptorDep
) -> ParticipantRead:
    participant, access = await service.get_participant(session, principal, participant_id)
    return _read(participant, encryptor, access)


@router.patch("/{participant_id:uuid}", responses=error_responses(409))
async def update_participant(
    participant_id: uuid.UUID,
    body: ParticipantUpdate,
    principal: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    encryptor: EncryptorDep,
    context: ActorContextDep,
) -> ParticipantRead:
    provided = set(body.model_fields_set) - {"reason"}
    participant, access = await service.update_participant(
        session,
        settings,
        encryptor,
        context,
        principal,
        participant_id,
        _fields(body),
        provided,
        body.reason,
    )
    return _read(participant, encryptor, access)


@router.post("/{participant_id:uuid}/withdraw", responses=error_responses(409))
async def withdraw_participant(
    participant_id: uuid.UUID,
    body: WithdrawRequest,
    principal: CurrentUser,
    session: SessionDep,
    storage: StorageDep,
    encryptor: EncryptorDep,
    context: ActorContextDep,
) -> ParticipantRead:
    """`stop_collection` keeps the data and refuses new sessions; `delete_data` erases contact
    details, credentials and research data, keeping the audit trail of what was erased."""
    participant, access = await service.withdraw_participant(
        session,
        context,
        principal,
        participant_id,
        scope=body.scope,
        reason=body.reason,
        storage=storage,
    )
    return _read(participant, encryptor, access)


@router.post(
    "/{participant_id:uuid}/access-code",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409),
)
async def issue_access_code(
    participant_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    context: ActorContextDep,
) -> AccessCodeRead:
    """A new access code, shown once and stored hashed; it replaces the previous one."""
    participant, code = await service.issue_access_code(
        session, settings, context, principal, participant_id
    )
    study = await session.get(Study, participant.study_id)
    assert study is not None
    return AccessCodeRead(
        participant_id=participant.participant_code, access_code=code, study_code=study.code
    )
