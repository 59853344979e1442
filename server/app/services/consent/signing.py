"""Signing and withdrawing consent (docs/consent.md: signing, withdrawal).

A signature binds a signer to one published version (its number and hash). A `witness` record
attests a consenting signature of the same version. Withdrawal ends every active record of the
participant. Every write leaves one audit event of category `consent`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.errors import ConflictError, NotFoundError, ValidationFailedError, field_error
from app.models.audit import AuditCategory
from app.models.consent import ConsentForm, ConsentFormStatus, ConsentRecord, SignerRole
from app.models.participant import Participant, ParticipantActor, ParticipantStatus
from app.models.study import ConsentMode, Study
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.consent.forms import published_form
from app.services.consent.gate import CONSENTING_ROLES
from app.services.consent.records import participant_records
from app.services.consent.signatures import SignatureImage, parse_signature_image
from app.services.outbox.announce import announce_consent_signed
from app.services.participants import resolve_participant
from app.services.policy import Capability
from app.services.principals import Principal, StaffPrincipal

TEXT_ANSWER_MAX_CHARS = 5000


# ---------------------------------------------------------------------------------------------
# Snapshots written to the audit trail


def _record_summary(record: ConsentRecord) -> dict[str, Any]:
    return {
        "record_id": str(record.id),
        "form_id": str(record.form_id),
        "form_version": record.form_version,
        "content_hash": record.content_hash,
        "signer_role": record.signer_role,
        "signed_at": record.signed_at.isoformat(),
        "withdrawn_at": record.withdrawn_at.isoformat() if record.withdrawn_at else None,
    }


def _record_snapshot(record: ConsentRecord, image: SignatureImage | None) -> dict[str, Any]:
    return {
        **_record_summary(record),
        "signer_name": record.signer_name,
        "witness_name": record.witness_name,
        "answers": record.answers,
        "signature_image": image.summary() if image else None,
        "recorded_by": str(record.recorded_by) if record.recorded_by else None,
        "ip": record.ip,
        "device": record.device,
    }


# ---------------------------------------------------------------------------------------------
# Signing and withdrawing


def _normalize_answer(kind: str, value: bool | str) -> bool | str | None:
    """One answer as stored: yes_no → "yes"/"no", checkbox → bool, text → trimmed or None."""
    if kind == "yes_no":
        if isinstance(value, bool):
            return "yes" if value else "no"
        if value.strip().lower() in ("yes", "no"):
            return value.strip().lower()
        raise ValueError("Answer yes or no")
    if kind == "checkbox":
        if not isinstance(value, bool):
            raise ValueError("Answer true or false")
        return value
    if not isinstance(value, str):
        raise ValueError("Answer with text")
    if len(value) > TEXT_ANSWER_MAX_CHARS:
        raise ValueError(f"At most {TEXT_ANSWER_MAX_CHARS} characters")
    return value.strip() or None


def _validate_answers(
    questions: Sequence[Mapping[str, Any]], answers: Mapping[str, bool | str]
) -> dict[str, Any]:
    """The answers normalised, or 422 listing unanswered required questions and bad answers.

    A required checkbox must be ticked (an unticked box is not agreement); a required yes/no
    question must be answered, either way; a required text question must not be blank.
    """
    by_id = {str(question["id"]): question for question in questions}
    errors = [
        {"field": f"answers.{key}", "message": "Not a question of this form"}
        for key in sorted(set(answers) - set(by_id))
    ]
    missing: list[str] = []
    normalized: dict[str, Any] = {}
    for question_id, question in by_id.items():
        value = answers.get(question_id)
        try:
            answer = None if value is None else _normalize_answer(str(question["type"]), value)
        except ValueError as exc:
            errors.append({"field": f"answers.{question_id}", "message": str(exc)})
            continue
        if answer is not None:
            normalized[question_id] = answer
        if question.get("required") and (answer is None or answer is False):
            missing.append(question_id)
            errors.append(
                {"field": f"answers.{question_id}", "message": "This question must be answered"}
            )
    if errors:
        message = (
            "Required questions are not answered: " + ", ".join(missing)
            if missing
            else "Some answers are not valid"
        )
        raise ValidationFailedError(message, details={"missing": missing, "errors": errors})
    return normalized


def _check_signer(
    participant: Participant,
    staff: StaffPrincipal | None,
    role: SignerRole,
    witness_name: str | None,
) -> None:
    if staff is None:
        allowed = [SignerRole.PARTICIPANT]
        if participant.actor == ParticipantActor.CAREGIVER:
            allowed.insert(0, SignerRole.CAREGIVER)
        if role not in allowed:
            raise field_error(
                "signer_role",
                "Signing with a participant sign-in allows only: "
                + ", ".join(r.value for r in allowed),
                allowed=[r.value for r in allowed],
            )
        if witness_name is not None:
            raise field_error(
                "witness_name", "A witness is recorded by staff for in-person signatures"
            )
        return
    if role is SignerRole.LAR and not witness_name:
        raise field_error(
            "witness_name",
            "An in-person signature by a legally authorized representative needs the witness",
        )
    if role is SignerRole.WITNESS and witness_name is not None:
        raise field_error(
            "witness_name", "A witness signs as the signer: give the name in signer_name"
        )


async def _active_records(
    session: AsyncSession, participant_id: uuid.UUID
) -> Sequence[ConsentRecord]:
    return await participant_records(
        session, participant_id, ConsentRecord.withdrawn_at.is_(None), newest_first=False
    )


@dataclass(frozen=True, slots=True)
class SignatureInput:
    participant_ref: str | None  # the UUID or the code; a participant token may leave it out
    form_id: uuid.UUID
    signer_name: str
    signer_role: SignerRole
    answers: Mapping[str, bool | str]
    signature_image: str | None
    witness_name: str | None
    device_signed_at: datetime | None = None


async def signing_participant(
    session: AsyncSession, principal: Principal, participant_ref: str | None, form_id: uuid.UUID
) -> tuple[Participant, ConsentForm]:
    """The participant a signature is for, named within the study of the form to sign."""
    form = await session.get(ConsentForm, form_id)
    if form is None:
        raise NotFoundError("Consent form not found")
    participant = await resolve_participant(
        session, principal, participant_ref, Capability.EDIT_PARTICIPANTS, study_id=form.study_id
    )
    return participant, form


async def sign_consent(
    session: AsyncSession,
    context: AuditContext,
    principal: Principal,
    signature: SignatureInput,
) -> ConsentRecord:
    participant, form = await signing_participant(
        session, principal, signature.participant_ref, signature.form_id
    )
    # Serialises signatures and withdrawals of one participant.
    await session.refresh(participant, with_for_update=True)
    staff = principal if isinstance(principal, StaffPrincipal) else None
    signer_name = signature.signer_name.strip()
    witness_name = signature.witness_name.strip() if signature.witness_name else None
    if not signer_name:
        raise field_error("signer_name", "The signer's name is required")
    _check_signer(participant, staff, signature.signer_role, witness_name)
    if participant.status == ParticipantStatus.WITHDRAWN:
        raise ConflictError("The participant has withdrawn from the study")
    study = await session.get(Study, participant.study_id)
    assert study is not None
    if study.consent_mode != ConsentMode.BUILTIN:
        raise ConflictError(
            "This study does not record consent in Metricis",
            details={"consent_mode": study.consent_mode},
        )
    if form.status != ConsentFormStatus.PUBLISHED or form.content_hash is None:
        published = await published_form(session, form.study_id, form.language)
        raise ConflictError(
            "Only the current published version of a consent form can be signed",
            details={
                "form_status": form.status,
                "version": form.version,
                "current_form_id": str(published.id) if published else None,
                "current_version": published.version if published else None,
            },
        )
    active = await _active_records(session, participant.id)
    if any(
        record.form_id == form.id and record.signer_role == signature.signer_role
        for record in active
    ):
        raise ConflictError(
            "This version is already signed in this role",
            details={"version": form.version, "signer_role": signature.signer_role.value},
        )
    if signature.signer_role is SignerRole.WITNESS and not any(
        record.form_id == form.id and record.signer_role in CONSENTING_ROLES for record in active
    ):
        raise ConflictError(
            "A witness attests an existing signature of this version: record that first",
            details={"version": form.version},
        )
    answers = _validate_answers(form.questions, signature.answers)
    image = (
        parse_signature_image(signature.signature_image)
        if signature.signature_image is not None
        else None
    )
    if form.requires_signature and image is None:
        raise field_error("signature_image", "This form requires a signature")
    consenting_before = [r for r in active if r.signer_role in CONSENTING_ROLES]
    record = ConsentRecord(
        id=uuid.uuid4(),
        participant_id=participant.id,
        study_id=participant.study_id,
        form_id=form.id,
        form_version=form.version,
        content_hash=form.content_hash,
        signer_name=signer_name,
        signer_role=signature.signer_role,
        witness_name=witness_name,
        answers=answers,
        signature_image=image.data_uri() if image else None,
        signed_at=utcnow(),
        device_signed_at=signature.device_signed_at,
        ip=context.ip,
        device=(context.user_agent or None) and context.user_agent[:255],
        recorded_by=staff.user_id if staff else None,
    )
    session.add(record)
    active_before = _record_summary(consenting_before[-1]) if consenting_before else None
    await announce_consent_signed(session, record, participant)
    await record_about(
        session,
        context,
        AuditSubject(
            AuditCategory.CONSENT, "consent_record", record.id, participant.study_id, participant.id
        ),
        "consent.signed",
        before={"active_consent": active_before},
        after=_record_snapshot(record, image),
    )
    return record


@dataclass(frozen=True, slots=True)
class Withdrawal:
    participant: Participant
    withdrawn_at: datetime
    reason: str
    records: Sequence[ConsentRecord]


async def withdraw_consent(
    session: AsyncSession,
    context: AuditContext,
    principal: Principal,
    *,
    participant_ref: str | None,
    study_id: uuid.UUID | None,
    reason: str,
) -> Withdrawal:
    """`participant_ref` is the UUID, or the code within `study_id` (a participant token's own
    study when left out)."""
    participant = await resolve_participant(
        session, principal, participant_ref, Capability.EDIT_PARTICIPANTS, study_id=study_id
    )
    await session.refresh(participant, with_for_update=True)
    active = await _active_records(session, participant.id)
    if not active:
        raise ConflictError("The participant has no active consent to withdraw")
    before = {"active_records": [_record_summary(record) for record in active]}
    now = utcnow()
    for record in active:
        record.withdrawn_at = now
        record.withdrawal_reason = reason
    after = {
        "withdrawn_records": [_record_summary(record) for record in active],
        "withdrawn_at": now.isoformat(),
    }
    subject = AuditSubject.participant(participant, AuditCategory.CONSENT)
    await record_about(
        session, context, subject, "consent.withdrawn", before=before, after=after, reason=reason
    )
    return Withdrawal(participant=participant, withdrawn_at=now, reason=reason, records=active)
