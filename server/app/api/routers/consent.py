"""E-consent endpoints (docs/consent.md); the rules live in the app.services.consent package."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.api.dependencies import (
    ActorContextDep,
    AnyActorContextDep,
    AnyPrincipal,
    CurrentUser,
    PageParamsDep,
    ParticipantQuery,
    SessionDep,
)
from app.api.openapi import error_responses
from app.models.consent import ConsentFormStatus
from app.schemas.common import ErrorEnvelope, Page
from app.schemas.consent import (
    LANGUAGE_PATTERN,
    ConsentFormCreate,
    ConsentFormPublish,
    ConsentFormRead,
    ConsentFormUpdate,
    ConsentRecordDetailRead,
    ConsentRecordRead,
    ConsentSignRequest,
    ConsentStatusRead,
    ConsentWithdrawalRead,
    ConsentWithdrawRequest,
    Text,
)
from app.services.consent import forms as forms_service
from app.services.consent import gate as gate_service
from app.services.consent import records as records_service
from app.services.consent import signing as signing_service

router = APIRouter(
    prefix="/consent",
    tags=["consent"],
    responses={
        403: {"model": ErrorEnvelope, "description": "The study role does not allow this"},
        404: {"model": ErrorEnvelope, "description": "Not found or not visible to the caller"},
    },
)

_CONFLICT = error_responses(409)


@router.get("/forms")
async def list_forms(
    principal: CurrentUser,
    session: SessionDep,
    page: PageParamsDep,
    study_id: uuid.UUID | None = None,
    language: Annotated[str | None, Query(max_length=16, pattern=LANGUAGE_PATTERN)] = None,
    status: ConsentFormStatus | None = None,
) -> Page[ConsentFormRead]:
    forms, pagination = await forms_service.list_forms(
        session, principal, page, study_id=study_id, language=language, status=status
    )
    return Page[ConsentFormRead](
        data=[ConsentFormRead.model_validate(form) for form in forms], pagination=pagination
    )


@router.post("/forms", status_code=status.HTTP_201_CREATED, responses=_CONFLICT)
async def create_form(
    body: ConsentFormCreate,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
) -> ConsentFormRead:
    """A new draft: the next version for the study and language."""
    form = await forms_service.create_form(
        session,
        context,
        principal,
        study_id=body.study_id,
        language=body.language,
        fields=forms_service.FormFields(
            title=body.title,
            content=body.content,
            questions=[question.model_dump(mode="json") for question in body.questions],
            requires_signature=body.requires_signature,
            reconsent_required=body.reconsent_required,
        ),
    )
    return ConsentFormRead.model_validate(form)


@router.get("/forms/{form_id:uuid}")
async def get_form(
    form_id: uuid.UUID, principal: AnyPrincipal, session: SessionDep
) -> ConsentFormRead:
    return ConsentFormRead.model_validate(await forms_service.get_form(session, principal, form_id))


@router.patch("/forms/{form_id:uuid}", responses=_CONFLICT)
async def update_form(
    form_id: uuid.UUID,
    body: ConsentFormUpdate,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
) -> ConsentFormRead:
    """Edit a draft; a published or retired version is immutable (409)."""
    changes = body.model_dump(mode="json", exclude_unset=True, exclude={"reason"})
    form = await forms_service.update_form(
        session, context, principal, form_id, changes, reason=body.reason
    )
    return ConsentFormRead.model_validate(form)


@router.delete("/forms/{form_id:uuid}", status_code=status.HTTP_204_NO_CONTENT, responses=_CONFLICT)
async def delete_form(
    form_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
    reason: Annotated[Text | None, Query(max_length=2000)] = None,
) -> None:
    """Delete a draft; a published or retired version is kept (409)."""
    await forms_service.delete_form(session, context, principal, form_id, reason=reason)


@router.post("/forms/{form_id:uuid}/publish", responses=_CONFLICT)
async def publish_form(
    form_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
    body: ConsentFormPublish | None = None,
) -> ConsentFormRead:
    """Freeze the draft with its SHA-256 and retire the version published before it."""
    form = await forms_service.publish_form(
        session, context, principal, form_id, reason=body.reason if body else None
    )
    return ConsentFormRead.model_validate(form)


@router.get("/status")
async def consent_status(
    principal: AnyPrincipal,
    session: SessionDep,
    participant_id: ParticipantQuery = None,
    study_id: uuid.UUID | None = None,
) -> ConsentStatusRead:
    """The participant's consent: a participant token reads its own, staff need READ."""
    state = await gate_service.get_consent_status(session, principal, participant_id, study_id)
    record = state.active_record
    return ConsentStatusRead(
        participant_id=state.participant.id,
        required=state.required,
        current_form=ConsentFormRead.model_validate(state.current_form)
        if state.current_form
        else None,
        signed_version=record.form_version if record else None,
        needs_reconsent=state.needs_reconsent,
        withdrawn=state.withdrawn,
        record_id=record.id if record else None,
    )


@router.post(
    "/sign",
    status_code=status.HTTP_201_CREATED,
    responses={
        **_CONFLICT,
        413: {"model": ErrorEnvelope, "description": "The signature image is too large"},
    },
)
async def sign(
    body: ConsentSignRequest,
    principal: AnyPrincipal,
    session: SessionDep,
    context: AnyActorContextDep,
) -> ConsentRecordRead:
    """Sign the current version: the participant itself, or staff recording it in person."""
    record = await signing_service.sign_consent(
        session,
        context,
        principal,
        signing_service.SignatureInput(
            participant_ref=body.participant_id,
            form_id=body.form_id,
            signer_name=body.signer_name,
            signer_role=body.signer_role,
            answers=body.answers,
            signature_image=body.signature_image,
            witness_name=body.witness_name,
        ),
    )
    return ConsentRecordRead.from_record(record)


@router.post("/withdraw", responses=_CONFLICT)
async def withdraw(
    body: ConsentWithdrawRequest,
    principal: AnyPrincipal,
    session: SessionDep,
    context: AnyActorContextDep,
) -> ConsentWithdrawalRead:
    withdrawal = await signing_service.withdraw_consent(
        session,
        context,
        principal,
        participant_ref=body.participant_id,
        study_id=body.study_id,
        reason=body.reason,
    )
    return ConsentWithdrawalRead(
        participant_id=withdrawal.participant.id,
        withdrawn_at=withdrawal.withdrawn_at,
        reason=withdrawal.reason,
        records=[ConsentRecordRead.from_record(record) for record in withdrawal.records],
    )


@router.get("/records")
async def list_records(
    principal: AnyPrincipal,
    session: SessionDep,
    page: PageParamsDep,
    participant_id: ParticipantQuery = None,
    study_id: uuid.UUID | None = None,
) -> Page[ConsentRecordRead]:
    records, pagination = await records_service.list_records(
        session, principal, page, participant_ref=participant_id, study_id=study_id
    )
    return Page[ConsentRecordRead](
        data=[ConsentRecordRead.from_record(record) for record in records],
        pagination=pagination,
    )


@router.get("/records/{record_id:uuid}")
async def get_record(
    record_id: uuid.UUID, principal: AnyPrincipal, session: SessionDep
) -> ConsentRecordDetailRead:
    record, _ = await records_service.get_record(session, principal, record_id)
    return ConsentRecordDetailRead.from_record(record)


@router.get(
    "/records/{record_id:uuid}/pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}, "description": "The signed form"}},
)
async def get_record_pdf(
    record_id: uuid.UUID, principal: AnyPrincipal, session: SessionDep
) -> Response:
    pdf = await records_service.record_pdf(session, principal, record_id)
    return Response(
        content=pdf.content,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{pdf.filename}"',
            "Cache-Control": "no-store",
        },
    )
