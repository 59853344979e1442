"""E-consent (DESIGN.md §5.10): versioned forms, signatures, withdrawal, status and the gate.

A form is a draft until published; publishing fixes its SHA-256 content hash and retires the
version published before it for the same study and language. A signature binds a signer to one
published version (its number and hash). Consent is given by a `participant`, `caregiver` or `lar`
signature; a `witness` record attests such a signature and is never consent on its own. Every
write leaves one audit event of category `consent`. Decisions are written up in docs/consent.md.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import json
import re
import struct
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from PIL import Image, UnidentifiedImageError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.errors import (
    ConflictError,
    DomainError,
    NotFoundError,
    ValidationFailedError,
)
from app.models.audit import AuditCategory
from app.models.consent import ConsentForm, ConsentFormStatus, ConsentRecord, SignerRole
from app.models.participant import Participant, ParticipantActor, ParticipantStatus
from app.models.study import ConsentMode, Study
from app.models.user import User
from app.schemas.common import PageParams, Pagination
from app.services.audit import AuditContext, record_event
from app.services.consent_pdf import ConsentPdfData, PdfQuestion, render_consent_pdf
from app.services.pagination import paginate
from app.services.participants import participant_for_principal
from app.services.policy import (
    Capability,
    member_study_access,
    require_study_capability,
    study_access,
)
from app.services.principals import ParticipantPrincipal, Principal, StaffPrincipal

SIGNATURE_MAX_BYTES = 512 * 1024
SIGNATURE_MAX_SIDE = 4000
SIGNATURE_MAX_PIXELS = 4_000_000
TEXT_ANSWER_MAX_CHARS = 5000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CONSENTING_ROLES = frozenset({SignerRole.PARTICIPANT, SignerRole.CAREGIVER, SignerRole.LAR})
EDITABLE_FORM_FIELDS = frozenset(
    {"title", "content", "questions", "requires_signature", "reconsent_required"}
)


class PayloadTooLargeError(DomainError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"


class ConsentGateReason(StrEnum):
    CONSENT_REQUIRED = "CONSENT_REQUIRED"
    RECONSENT_REQUIRED = "RECONSENT_REQUIRED"
    CONSENT_WITHDRAWN = "CONSENT_WITHDRAWN"


_GATE_MESSAGES = {
    ConsentGateReason.CONSENT_REQUIRED: "The participant has not given consent for this study",
    ConsentGateReason.RECONSENT_REQUIRED: (
        "A new version of the consent form must be signed before continuing"
    ),
    ConsentGateReason.CONSENT_WITHDRAWN: "The participant has withdrawn consent",
}


@dataclass(frozen=True, slots=True)
class ConsentGateResult:
    """Whether the participant may start an assessment; `reason` is a gate code otherwise."""

    allowed: bool
    reason: str | None = None
    message: str | None = None

    @classmethod
    def refused(cls, reason: ConsentGateReason) -> ConsentGateResult:
        return cls(allowed=False, reason=reason.value, message=_GATE_MESSAGES[reason])


# ---------------------------------------------------------------------------------------------
# Content hash


def normalized_questions(questions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": str(question["id"]),
            "text": str(question["text"]),
            "type": str(question["type"]),
            "required": bool(question.get("required", False)),
        }
        for question in questions
    ]


def canonical_form_content(
    *,
    title: str,
    content: str,
    questions: Sequence[Mapping[str, Any]],
    requires_signature: bool,
    language: str,
    version: int,
) -> bytes:
    """The bytes the content hash covers: sorted-key compact JSON, UTF-8, no ASCII escaping."""
    payload = {
        "title": title,
        "content": content,
        "questions": normalized_questions(questions),
        "requires_signature": requires_signature,
        "language": language,
        "version": version,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def form_content_hash(form: ConsentForm) -> str:
    return hashlib.sha256(
        canonical_form_content(
            title=form.title,
            content=form.content,
            questions=form.questions,
            requires_signature=form.requires_signature,
            language=form.language,
            version=form.version,
        )
    ).hexdigest()


# ---------------------------------------------------------------------------------------------
# Snapshots written to the audit trail


def form_snapshot(form: ConsentForm) -> dict[str, Any]:
    return {
        "form_id": str(form.id),
        "study_id": str(form.study_id),
        "language": form.language,
        "version": form.version,
        "status": form.status,
        "title": form.title,
        "content": form.content,
        "questions": normalized_questions(form.questions),
        "requires_signature": form.requires_signature,
        "reconsent_required": form.reconsent_required,
        "content_hash": form.content_hash,
        "published_at": form.published_at.isoformat() if form.published_at else None,
    }


def _form_summary(form: ConsentForm) -> dict[str, Any]:
    return {
        "form_id": str(form.id),
        "version": form.version,
        "status": form.status,
        "content_hash": form.content_hash,
    }


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
# Forms


def _field_error(field: str, message: str, **extra: Any) -> ValidationFailedError:
    return ValidationFailedError(
        message, details={"errors": [{"field": field, "message": message}], **extra}
    )


async def _lock_study(session: AsyncSession, study_id: uuid.UUID) -> Study:
    """The study row, locked: form creation and publication per study run one at a time."""
    study = await session.scalar(
        select(Study)
        .where(Study.id == study_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if study is None:
        raise NotFoundError("Study not found")
    return study


@dataclass(frozen=True, slots=True)
class FormFields:
    title: str
    content: str
    questions: list[dict[str, Any]]
    requires_signature: bool
    reconsent_required: bool


async def create_form(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    *,
    study_id: uuid.UUID,
    language: str,
    fields: FormFields,
) -> ConsentForm:
    await require_study_capability(session, principal, study_id, Capability.CONFIGURE_STUDY)
    study = await _lock_study(session, study_id)
    if language not in (study.supported_languages or []):
        raise _field_error(
            "language",
            f"'{language}' is not one of the study's languages",
            supported_languages=list(study.supported_languages or []),
        )
    latest = await session.scalar(
        select(func.max(ConsentForm.version)).where(
            ConsentForm.study_id == study_id, ConsentForm.language == language
        )
    )
    form = ConsentForm(
        id=uuid.uuid4(),
        study_id=study_id,
        language=language,
        version=int(latest or 0) + 1,
        title=fields.title,
        content=fields.content,
        questions=normalized_questions(fields.questions),
        requires_signature=fields.requires_signature,
        reconsent_required=fields.reconsent_required,
        status=ConsentFormStatus.DRAFT.value,
        created_by=principal.user_id,
    )
    session.add(form)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ConflictError(
            "Another version of this form was created at the same time; retry"
        ) from exc
    await record_event(
        session,
        context,
        action="consent.form_created",
        category=AuditCategory.CONSENT,
        entity_type="consent_form",
        entity_id=form.id,
        study_id=study_id,
        after=form_snapshot(form),
    )
    return form


async def list_forms(
    session: AsyncSession,
    principal: StaffPrincipal,
    params: PageParams,
    *,
    study_id: uuid.UUID | None,
    language: str | None,
    status: ConsentFormStatus | None,
) -> tuple[Sequence[ConsentForm], Pagination]:
    statement = select(ConsentForm)
    if study_id is not None:
        await require_study_capability(session, principal, study_id, Capability.READ)
        statement = statement.where(ConsentForm.study_id == study_id)
    else:
        memberships = await member_study_access(session, principal)
        if memberships is not None:
            if not memberships:
                return [], Pagination.build(page=params.page, per_page=params.per_page, total=0)
            statement = statement.where(ConsentForm.study_id.in_(list(memberships)))
    if language is not None:
        statement = statement.where(ConsentForm.language == language)
    if status is not None:
        statement = statement.where(ConsentForm.status == status.value)
    return await paginate(
        session,
        statement,
        params,
        sortable={
            "version": ConsentForm.version,
            "language": ConsentForm.language,
            "created_at": ConsentForm.created_at,
            "published_at": ConsentForm.published_at,
            "status": ConsentForm.status,
        },
        default_sort="version",
        tie_breaker=ConsentForm.id,
    )


async def get_form(session: AsyncSession, principal: Principal, form_id: uuid.UUID) -> ConsentForm:
    """Staff with READ on the study; a participant sees its study's published and retired forms."""
    form = await session.get(ConsentForm, form_id)
    if form is None:
        raise NotFoundError("Consent form not found")
    if isinstance(principal, ParticipantPrincipal):
        if form.study_id != principal.study_id or form.published_at is None:
            raise NotFoundError("Consent form not found")
        return form
    try:
        await study_access(session, principal, form.study_id)
    except NotFoundError:
        raise NotFoundError("Consent form not found") from None
    return form


async def _form_to_configure(
    session: AsyncSession, principal: StaffPrincipal, form_id: uuid.UUID
) -> ConsentForm:
    form = await get_form(session, principal, form_id)
    await require_study_capability(session, principal, form.study_id, Capability.CONFIGURE_STUDY)
    return form


def _require_draft(form: ConsentForm, action: str) -> None:
    if form.status != ConsentFormStatus.DRAFT.value:
        raise ConflictError(
            f"A {form.status} consent form is immutable and cannot be {action}",
            details={"status": form.status, "version": form.version},
        )


async def update_form(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    form_id: uuid.UUID,
    changes: Mapping[str, Any],
    *,
    reason: str | None = None,
) -> ConsentForm:
    form = await _form_to_configure(session, principal, form_id)
    _require_draft(form, "edited")
    unknown = sorted(set(changes) - EDITABLE_FORM_FIELDS)
    if unknown:
        raise _field_error(unknown[0], "This field cannot be changed", fields=unknown)
    nulls = sorted(name for name, value in changes.items() if value is None)
    if nulls:
        raise _field_error(nulls[0], "This field cannot be null", fields=nulls)
    before = form_snapshot(form)
    for name, value in changes.items():
        setattr(form, name, normalized_questions(value) if name == "questions" else value)
    after = form_snapshot(form)
    if after != before:
        await record_event(
            session,
            context,
            action="consent.form_updated",
            category=AuditCategory.CONSENT,
            entity_type="consent_form",
            entity_id=form.id,
            study_id=form.study_id,
            before=before,
            after=after,
            reason=reason,
        )
    return form


async def delete_form(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    form_id: uuid.UUID,
    *,
    reason: str | None = None,
) -> None:
    form = await _form_to_configure(session, principal, form_id)
    _require_draft(form, "deleted")
    before = form_snapshot(form)
    await session.delete(form)
    await record_event(
        session,
        context,
        action="consent.form_deleted",
        category=AuditCategory.CONSENT,
        entity_type="consent_form",
        entity_id=form.id,
        study_id=form.study_id,
        before=before,
        reason=reason,
    )


async def publish_form(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    form_id: uuid.UUID,
    *,
    reason: str | None = None,
) -> ConsentForm:
    form = await _form_to_configure(session, principal, form_id)
    await _lock_study(session, form.study_id)
    await session.refresh(form)
    _require_draft(form, "published again")
    previous = await _published_form(session, form.study_id, form.language)
    if previous is not None and previous.version > form.version:
        raise ConflictError(
            f"Version {previous.version} is already published; this older draft cannot be "
            "published. Delete it, or create a new draft from the current text.",
            details={"published_version": previous.version, "version": form.version},
        )
    before: dict[str, Any] = {
        **_form_summary(form),
        "previous_published": _form_summary(previous) if previous else None,
    }
    now = utcnow()
    if previous is not None:
        previous.status = ConsentFormStatus.RETIRED.value
    form.status = ConsentFormStatus.PUBLISHED.value
    form.published_at = now
    form.content_hash = form_content_hash(form)
    after: dict[str, Any] = {
        **_form_summary(form),
        "published_at": now.isoformat(),
        "reconsent_required": form.reconsent_required,
        "retired": _form_summary(previous) if previous else None,
    }
    await record_event(
        session,
        context,
        action="consent.form_published",
        category=AuditCategory.CONSENT,
        entity_type="consent_form",
        entity_id=form.id,
        study_id=form.study_id,
        before=before,
        after=after,
        reason=reason,
    )
    return form


async def _published_form(
    session: AsyncSession, study_id: uuid.UUID, language: str
) -> ConsentForm | None:
    return await session.scalar(
        select(ConsentForm)
        .where(
            ConsentForm.study_id == study_id,
            ConsentForm.language == language,
            ConsentForm.status == ConsentFormStatus.PUBLISHED.value,
        )
        .order_by(ConsentForm.version.desc())
        .limit(1)
    )


async def current_form(
    session: AsyncSession, study: Study, language: str | None
) -> ConsentForm | None:
    """The published form in the participant's language, else in the study's first language."""
    candidates = [language] if language else []
    if study.supported_languages:
        candidates.append(study.supported_languages[0])
    for candidate in dict.fromkeys(candidates):
        form = await _published_form(session, study.id, candidate)
        if form is not None:
            return form
    return None


# ---------------------------------------------------------------------------------------------
# Consent state: what /status shows and what the gate decides from


@dataclass(frozen=True, slots=True)
class ConsentState:
    participant: Participant
    study: Study
    required: bool
    current_form: ConsentForm | None
    active_record: ConsentRecord | None
    needs_reconsent: bool
    withdrawn: bool


async def _consenting_records(
    session: AsyncSession, participant_id: uuid.UUID
) -> Sequence[ConsentRecord]:
    return (
        await session.scalars(
            select(ConsentRecord)
            .where(
                ConsentRecord.participant_id == participant_id,
                ConsentRecord.signer_role.in_([role.value for role in CONSENTING_ROLES]),
            )
            .order_by(ConsentRecord.signed_at.desc(), ConsentRecord.id)
        )
    ).all()


async def _needs_reconsent(
    session: AsyncSession, record: ConsentRecord, current: ConsentForm
) -> bool:
    """Whether a version marked `reconsent_required` was published after the signed one.

    Same language: any such version after the signed one, up to the current one (an intermediate
    version counts: its changes were never signed). Another language (the participant's
    language changed): any such version of the current language published after the signature.
    """
    if record.form_id == current.id:
        return False
    statement = select(ConsentForm.id).where(
        ConsentForm.study_id == current.study_id,
        ConsentForm.language == current.language,
        ConsentForm.reconsent_required.is_(True),
        ConsentForm.published_at.is_not(None),
    )
    signed_form = await session.get(ConsentForm, record.form_id)
    if signed_form is not None and signed_form.language == current.language:
        statement = statement.where(
            ConsentForm.version > record.form_version, ConsentForm.version <= current.version
        )
    else:
        statement = statement.where(ConsentForm.published_at > record.signed_at)
    return await session.scalar(statement.limit(1)) is not None


async def consent_state(session: AsyncSession, participant: Participant) -> ConsentState:
    study = await session.get(Study, participant.study_id)
    if study is None:
        raise NotFoundError("Study not found")
    current = await current_form(session, study, participant.language)
    records = await _consenting_records(session, participant.id)
    active = next((record for record in records if record.withdrawn_at is None), None)
    return ConsentState(
        participant=participant,
        study=study,
        required=study.consent_mode == ConsentMode.BUILTIN.value,
        current_form=current,
        active_record=active,
        needs_reconsent=(
            active is not None
            and current is not None
            and await _needs_reconsent(session, active, current)
        ),
        withdrawn=active is None and any(record.withdrawn_at is not None for record in records),
    )


async def consent_gate(session: AsyncSession, participant: Participant) -> ConsentGateResult:
    """May this participant start an assessment as far as consent goes?

    Called by the assessment service before a session starts. Only consent is judged here: a
    participant withdrawn from the study is refused by the session service itself (409).
    """
    state = await consent_state(session, participant)
    if not state.required:
        return ConsentGateResult(allowed=True)
    if state.active_record is None:
        if state.withdrawn:
            return ConsentGateResult.refused(ConsentGateReason.CONSENT_WITHDRAWN)
        return ConsentGateResult.refused(ConsentGateReason.CONSENT_REQUIRED)
    if state.needs_reconsent:
        return ConsentGateResult.refused(ConsentGateReason.RECONSENT_REQUIRED)
    return ConsentGateResult(allowed=True)


async def get_consent_status(
    session: AsyncSession, principal: Principal, participant_id: uuid.UUID | None
) -> ConsentState:
    participant = await participant_for_principal(
        session, principal, participant_id, Capability.READ
    )
    return await consent_state(session, participant)


# ---------------------------------------------------------------------------------------------
# Signature images


@dataclass(frozen=True, slots=True)
class SignatureImage:
    kind: Literal["png", "svg"]
    data: bytes

    @property
    def media_type(self) -> str:
        return "image/png" if self.kind == "png" else "image/svg+xml"

    def data_uri(self) -> str:
        return f"data:{self.media_type};base64,{base64.b64encode(self.data).decode('ascii')}"

    def summary(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "bytes": len(self.data),
            "sha256": hashlib.sha256(self.data).hexdigest(),
        }


def _image_error(message: str, **details: Any) -> ValidationFailedError:
    return ValidationFailedError(
        message,
        details={"errors": [{"field": "signature_image", "message": message}], **details},
    )


def _too_large() -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The signature image exceeds {SIGNATURE_MAX_BYTES // 1024} KiB",
        details={"field": "signature_image", "max_bytes": SIGNATURE_MAX_BYTES},
    )


# Anything in an SVG that can run code or fetch something: only self-contained drawings pass.
_SVG_FORBIDDEN: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"<\s*script", re.IGNORECASE), "script elements"),
    (re.compile(r"<!\s*(doctype|entity)", re.IGNORECASE), "DTDs and entity declarations"),
    (re.compile(r"<\s*foreignobject", re.IGNORECASE), "foreignObject elements"),
    (re.compile(r"<\s*(iframe|embed|object)\b", re.IGNORECASE), "embedded documents"),
    (re.compile(r"[\s\"'/]on[a-z]+\s*=", re.IGNORECASE), "event handler attributes"),
    (re.compile(r"javascript\s*:", re.IGNORECASE), "javascript: URLs"),
    (re.compile(r"\bhref\s*=\s*(?![\"']?\s*#)", re.IGNORECASE), "external references (href)"),
    (re.compile(r"[\s\"'/]src\s*=", re.IGNORECASE), "external references (src)"),
    (re.compile(r"url\(\s*(?![\"']?\s*#)", re.IGNORECASE), "external references (url())"),
    (re.compile(r"@import", re.IGNORECASE), "CSS imports"),
)


def _check_png(data: bytes) -> None:
    if not data.startswith(PNG_MAGIC):
        raise _image_error("The signature image is not a PNG image")
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise _image_error("The signature image is not a valid PNG image")
    width, height = struct.unpack(">II", data[16:24])
    if not (
        0 < width <= SIGNATURE_MAX_SIDE
        and 0 < height <= SIGNATURE_MAX_SIDE
        and width * height <= SIGNATURE_MAX_PIXELS
    ):
        raise _image_error(
            "The signature image dimensions are out of range",
            width=width,
            height=height,
            max_side=SIGNATURE_MAX_SIDE,
        )
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            image.verify()
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error) as exc:
        raise _image_error("The signature image is not a valid PNG image") from exc


def _check_svg(data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _image_error("The SVG signature is not UTF-8 text") from exc
    if not re.search(r"<\s*svg[\s>]", text, re.IGNORECASE):
        raise _image_error("The signature image is not an SVG document")
    problems = [label for pattern, label in _SVG_FORBIDDEN if pattern.search(text)]
    if problems:
        raise _image_error(
            "The SVG signature contains content that is not allowed: " + ", ".join(problems),
            problems=problems,
        )


def parse_signature_image(value: str) -> SignatureImage:
    """A PNG or SVG data URI, decoded and checked; the size limit applies to the decoded bytes."""
    header, separator, payload = value.strip().partition(",")
    if not header.lower().startswith("data:") or not separator:
        raise _image_error("The signature image must be a data URI (data:image/png;base64,...)")
    media_type, *parameters = (part.strip().lower() for part in header[5:].split(";"))
    if media_type not in ("image/png", "image/svg+xml"):
        raise _image_error(
            "The signature image must be PNG or SVG",
            allowed=["image/png", "image/svg+xml"],
        )
    if "base64" in parameters:
        compact = "".join(payload.split())
        if len(compact) > 4 * ((SIGNATURE_MAX_BYTES + 2) // 3):
            raise _too_large()
        try:
            data = base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _image_error("The signature image is not valid base64") from exc
    elif media_type == "image/png":
        raise _image_error("A PNG signature must be base64-encoded")
    else:
        data = unquote(payload).encode("utf-8")
    if len(data) > SIGNATURE_MAX_BYTES:
        raise _too_large()
    if not data:
        raise _image_error("The signature image is empty")
    if media_type == "image/png":
        _check_png(data)
        return SignatureImage("png", data)
    _check_svg(data)
    return SignatureImage("svg", data)


def stored_signature_image(data_uri: str | None) -> SignatureImage | None:
    """The image of a stored record (stored as a base64 data URI by `sign_consent`)."""
    if not data_uri:
        return None
    header, _, payload = data_uri.partition(",")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None
    return SignatureImage("png" if header.startswith("data:image/png") else "svg", data)


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
        if participant.actor == ParticipantActor.CAREGIVER.value:
            allowed.insert(0, SignerRole.CAREGIVER)
        if role not in allowed:
            raise _field_error(
                "signer_role",
                "Signing with a participant sign-in allows only: "
                + ", ".join(r.value for r in allowed),
                allowed=[r.value for r in allowed],
            )
        if witness_name is not None:
            raise _field_error(
                "witness_name", "A witness is recorded by staff for in-person signatures"
            )
        return
    if role is SignerRole.LAR and not witness_name:
        raise _field_error(
            "witness_name",
            "An in-person signature by a legally authorized representative needs the witness",
        )
    if role is SignerRole.WITNESS and witness_name is not None:
        raise _field_error(
            "witness_name", "A witness signs as the signer: give the name in signer_name"
        )


async def _active_records(
    session: AsyncSession, participant_id: uuid.UUID
) -> Sequence[ConsentRecord]:
    return (
        await session.scalars(
            select(ConsentRecord)
            .where(
                ConsentRecord.participant_id == participant_id,
                ConsentRecord.withdrawn_at.is_(None),
            )
            .order_by(ConsentRecord.signed_at, ConsentRecord.id)
        )
    ).all()


@dataclass(frozen=True, slots=True)
class SignatureInput:
    participant_id: uuid.UUID | None
    form_id: uuid.UUID
    signer_name: str
    signer_role: SignerRole
    answers: Mapping[str, bool | str]
    signature_image: str | None
    witness_name: str | None
    device_signed_at: datetime | None = None


async def sign_consent(
    session: AsyncSession,
    context: AuditContext,
    principal: Principal,
    signature: SignatureInput,
) -> ConsentRecord:
    participant = await participant_for_principal(
        session, principal, signature.participant_id, Capability.EDIT_PARTICIPANTS
    )
    # Serialises signatures and withdrawals of one participant.
    await session.refresh(participant, with_for_update=True)
    staff = principal if isinstance(principal, StaffPrincipal) else None
    signer_name = signature.signer_name.strip()
    witness_name = signature.witness_name.strip() if signature.witness_name else None
    if not signer_name:
        raise _field_error("signer_name", "The signer's name is required")
    _check_signer(participant, staff, signature.signer_role, witness_name)
    if participant.status == ParticipantStatus.WITHDRAWN.value:
        raise ConflictError("The participant has withdrawn from the study")
    study = await session.get(Study, participant.study_id)
    assert study is not None
    if study.consent_mode != ConsentMode.BUILTIN.value:
        raise ConflictError(
            "This study does not record consent in Metricis",
            details={"consent_mode": study.consent_mode},
        )
    form = await session.get(ConsentForm, signature.form_id)
    if form is None or form.study_id != participant.study_id:
        raise NotFoundError("Consent form not found")
    if form.status != ConsentFormStatus.PUBLISHED.value or form.content_hash is None:
        published = await _published_form(session, form.study_id, form.language)
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
        record.form_id == form.id and record.signer_role == signature.signer_role.value
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
        raise _field_error("signature_image", "This form requires a signature")
    consenting_before = [r for r in active if r.signer_role in CONSENTING_ROLES]
    record = ConsentRecord(
        id=uuid.uuid4(),
        participant_id=participant.id,
        study_id=participant.study_id,
        form_id=form.id,
        form_version=form.version,
        content_hash=form.content_hash,
        signer_name=signer_name,
        signer_role=signature.signer_role.value,
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
    await record_event(
        session,
        context,
        action="consent.signed",
        category=AuditCategory.CONSENT,
        entity_type="consent_record",
        entity_id=record.id,
        study_id=participant.study_id,
        participant_id=participant.id,
        before={
            "active_consent": _record_summary(consenting_before[-1]) if consenting_before else None
        },
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
    participant_id: uuid.UUID | None,
    reason: str,
) -> Withdrawal:
    participant = await participant_for_principal(
        session, principal, participant_id, Capability.EDIT_PARTICIPANTS
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
    await record_event(
        session,
        context,
        action="consent.withdrawn",
        category=AuditCategory.CONSENT,
        entity_type="participant",
        entity_id=participant.id,
        study_id=participant.study_id,
        participant_id=participant.id,
        before=before,
        after={
            "withdrawn_records": [_record_summary(record) for record in active],
            "withdrawn_at": now.isoformat(),
        },
        reason=reason,
    )
    return Withdrawal(participant=participant, withdrawn_at=now, reason=reason, records=active)


# ---------------------------------------------------------------------------------------------
# Records and their PDF


async def list_records(
    session: AsyncSession,
    principal: Principal,
    params: PageParams,
    *,
    participant_id: uuid.UUID | None,
    study_id: uuid.UUID | None,
) -> tuple[Sequence[ConsentRecord], Pagination]:
    statement = select(ConsentRecord)
    if isinstance(principal, ParticipantPrincipal) or participant_id is not None:
        participant = await participant_for_principal(
            session, principal, participant_id, Capability.READ
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
        raise _field_error("participant_id", "Give participant_id or study_id")
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
    record = await session.get(ConsentRecord, record_id)
    if record is None:
        raise NotFoundError("Consent record not found")
    try:
        participant = await participant_for_principal(
            session, principal, record.participant_id, Capability.READ
        )
    except NotFoundError:
        raise NotFoundError("Consent record not found") from None
    return record, participant


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
