"""Consent forms: drafts, edits, publication and versions (docs/consent.md, forms and versions).

A form is a draft until published; publishing fixes its SHA-256 content hash and retires the
version published before it for the same study and language. Every write leaves one audit event
of category `consent`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.errors import ConflictError, NotFoundError, field_error, not_found_as
from app.models.audit import AuditCategory
from app.models.consent import ConsentForm, ConsentFormStatus
from app.models.study import Study
from app.schemas.common import PageParams, Pagination
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about, record_change
from app.services.pagination import paginate
from app.services.policy import (
    Capability,
    limit_to_readable_studies,
    require_study_capability,
    study_access,
)
from app.services.principals import ParticipantPrincipal, Principal, StaffPrincipal

EDITABLE_FORM_FIELDS = frozenset(
    {"title", "content", "questions", "requires_signature", "reconsent_required"}
)


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


def _subject(form: ConsentForm) -> AuditSubject:
    return AuditSubject(AuditCategory.CONSENT, "consent_form", form.id, form.study_id)


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


# ---------------------------------------------------------------------------------------------
# Forms


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
        raise field_error(
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
        status=ConsentFormStatus.DRAFT,
        created_by=principal.user_id,
    )
    session.add(form)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ConflictError(
            "Another version of this form was created at the same time; retry"
        ) from exc
    await record_about(
        session, context, _subject(form), "consent.form_created", after=form_snapshot(form)
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
    statement = await limit_to_readable_studies(
        session, principal, select(ConsentForm), ConsentForm.study_id, study_id
    )
    if statement is None:
        return [], Pagination.empty(params)
    if language is not None:
        statement = statement.where(ConsentForm.language == language)
    if status is not None:
        statement = statement.where(ConsentForm.status == status)
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
    with not_found_as("Consent form not found"):
        await study_access(session, principal, form.study_id)
    return form


async def _form_to_configure(
    session: AsyncSession, principal: StaffPrincipal, form_id: uuid.UUID
) -> ConsentForm:
    form = await get_form(session, principal, form_id)
    await require_study_capability(session, principal, form.study_id, Capability.CONFIGURE_STUDY)
    return form


def _require_draft(form: ConsentForm, action: str) -> None:
    if form.status != ConsentFormStatus.DRAFT:
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
        raise field_error(unknown[0], "This field cannot be changed", fields=unknown)
    nulls = sorted(name for name, value in changes.items() if value is None)
    if nulls:
        raise field_error(nulls[0], "This field cannot be null", fields=nulls)
    before = form_snapshot(form)
    for name, value in changes.items():
        setattr(form, name, normalized_questions(value) if name == "questions" else value)
    after = form_snapshot(form)
    await record_change(
        session, context, _subject(form), "consent.form_updated", before, after, reason
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
    await record_about(
        session, context, _subject(form), "consent.form_deleted", before=before, reason=reason
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
    previous = await published_form(session, form.study_id, form.language)
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
        previous.status = ConsentFormStatus.RETIRED
    form.status = ConsentFormStatus.PUBLISHED
    form.published_at = now
    form.content_hash = form_content_hash(form)
    after: dict[str, Any] = {
        **_form_summary(form),
        "published_at": now.isoformat(),
        "reconsent_required": form.reconsent_required,
        "retired": _form_summary(previous) if previous else None,
    }
    await record_about(
        session,
        context,
        _subject(form),
        "consent.form_published",
        before=before,
        after=after,
        reason=reason,
    )
    return form


async def published_form(
    session: AsyncSession, study_id: uuid.UUID, language: str
) -> ConsentForm | None:
    """The version in force for the study and language: the one signatures are given to."""
    return await session.scalar(
        select(ConsentForm)
        .where(
            ConsentForm.study_id == study_id,
            ConsentForm.language == language,
            ConsentForm.status == ConsentFormStatus.PUBLISHED,
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
        form = await published_form(session, study.id, candidate)
        if form is not None:
            return form
    return None
