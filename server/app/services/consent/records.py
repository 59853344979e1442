"""Consent records: listing and reading them, and the signed form as a PDF (rendered by
`app.services.consent.pdf`, loaded on first use)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from app.core.clock import utcnow
from app.core.errors import field_error
from app.models.consent import ConsentForm, ConsentRecord
from app.models.participant import Participant
from app.models.study import Study
from app.models.user import User
from app.schemas.common import PageParams, Pagination
from app.services.consent.signatures import stored_signature_image
from app.services.pagination import paginate
from app.services.participants import participant_row_for, resolve_participant
from app.services.policy import Capability, require_study_capability
from app.services.principals import ParticipantPrincipal, Principal, StaffPrincipal


async def participant_records(
    session: AsyncSession,
    participant_id: uuid.UUID,
    *criteria: ColumnElement[bool],
    newest_first: bool,
) -> Sequence[ConsentRecord]:
    """A participant's records matching `criteria`, in signing order (ties by id)."""
    signed_at = ConsentRecord.signed_at.desc() if newest_first else ConsentRecord.signed_at
    return (
        await session.scalars(
            select(ConsentRecord)
            .where(ConsentRecord.participant_id == participant_id, *criteria)
            .order_by(signed_at, ConsentRecord.id)
        )
    ).all()


async def list_records(
    session: AsyncSession,
    principal: Principal,
    params: PageParams,
    *,
    participant_ref: str | None,
    study_id: uuid.UUID | None,
) -> tuple[Sequence[ConsentRecord], Pagination]:
    """One participant's records (`participant_ref`: the UUID, or the code within `study_id`),
    or the records of a study."""
    statement = select(ConsentRecord)
    if isinstance(principal, ParticipantPrincipal) or participant_ref is not None:
        participant = await resolve_participant(
            session, principal, participant_ref, Capability.READ, study_id=study_id
        )
        statement = statement.where(ConsentRecord.participant_id == participant.id)
    elif study_id is not None:
        assert isinstance(principal, StaffPrincipal)
        access = await require_study_capability(session, principal, study_id, Capability.READ)
        statement = statement.where(ConsentRecord.study_id == study_id)
        if access.site_id is not None:
            statement = statement.join(
                Participant, Participant.id == ConsentRecord.participant_id
            ).where(Participant.site_id == access.site_id)
    else:
        raise field_error("participant_id", "Give participant_id or study_id")
    return await paginate(
        session,
        statement,
        params,
        sortable={"signed_at": ConsentRecord.signed_at, "form_version": ConsentRecord.form_version},
        default_sort="signed_at",
        tie_breaker=ConsentRecord.id,
    )


async def get_record(
    session: AsyncSession, principal: Principal, record_id: uuid.UUID
) -> tuple[ConsentRecord, Participant]:
    return await participant_row_for(
        session,
        principal,
        ConsentRecord,
        record_id,
        Capability.READ,
        missing="Consent record not found",
    )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


@dataclass(frozen=True, slots=True)
class ConsentPdf:
    filename: str
    content: bytes


def _safe_filename_part(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", value).strip("_") or "x"


async def record_pdf(
    session: AsyncSession, principal: Principal, record_id: uuid.UUID
) -> ConsentPdf:
    record, participant = await get_record(session, principal, record_id)
    form = await session.get(ConsentForm, record.form_id)
    study = await session.get(Study, record.study_id)
    assert form is not None and study is not None
    recorder = await session.get(User, record.recorded_by) if record.recorded_by else None
    image = stored_signature_image(record.signature_image)
    from app.services.consent.pdf import ConsentPdfData, PdfQuestion, render_consent_pdf

    data = ConsentPdfData(
        record_id=str(record.id),
        study_code=study.code,
        study_name=study.name,
        participant_code=participant.participant_code,
        form_title=form.title,
        form_language=form.language,
        form_version=record.form_version,
        content_hash=record.content_hash,
        content=form.content,
        questions=[
            PdfQuestion(
                text=str(question["text"]),
                answer=record.answers.get(str(question["id"])),
                kind=str(question["type"]),
            )
            for question in form.questions
        ],
        signer_name=record.signer_name,
        signer_role=record.signer_role,
        witness_name=record.witness_name,
        recorded_by=f"{recorder.name} ({recorder.email})" if recorder else None,
        signed_at=record.signed_at,
        device_signed_at=record.device_signed_at,
        timezone=_zone(participant.timezone),
        signature_kind=image.kind if image else None,
        signature_data=image.data if image else None,
        withdrawn_at=record.withdrawn_at,
        withdrawal_reason=record.withdrawal_reason,
        generated_at=utcnow(),
    )
    content = await asyncio.to_thread(render_consent_pdf, data)
    study_part = _safe_filename_part(study.code)
    participant_part = _safe_filename_part(participant.participant_code)
    filename = f"consent-{study_part}-{participant_part}-v{record.form_version}.pdf"
    return ConsentPdf(filename=filename, content=content)
