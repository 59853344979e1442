"""Templates saved on the server: `POST /api/templates` from a study or a document, listed with
the built-ins, applied like them (docs/templates.md, saved templates).

A saved template holds a study's consent texts, reminder wording and integration addresses, so
it is not shared by default: its author and administrators see it. Saving from a study needs
what exporting it needs (configure_study there); saving a document, the right to create
studies, since a template is only good for that.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.errors import ConflictError, NotFoundError, field_error
from app.models.audit import AuditCategory
from app.models.template import SavedTemplate
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.policy import require_study_creator
from app.services.principals import StaffPrincipal
from app.services.templates.builtins import builtin_templates
from app.services.templates.documents import export_study, parse_template


def _subject(template: SavedTemplate) -> AuditSubject:
    return AuditSubject(
        AuditCategory.CONFIG, "study_template", template.id, template.source_study_id
    )


def _snapshot(template: SavedTemplate) -> dict[str, Any]:
    return {
        "title": template.title,
        "source_study_id": str(template.source_study_id) if template.source_study_id else None,
        "batteries": len(template.document.get("batteries", [])),
        "consent_forms": len(template.document.get("consent_forms", [])),
    }


async def save_template(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    *,
    title: str,
    summary: str | None,
    from_study_id: uuid.UUID | None,
    document: Mapping[str, Any] | None,
) -> SavedTemplate:
    """Keep a template made from a study (its configuration now) or from a document."""
    if (from_study_id is None) == (document is None):
        raise field_error("from_study_id", "Give either from_study_id or document, not both")
    if from_study_id is not None:
        template = await export_study(session, principal, from_study_id)
    else:
        require_study_creator(principal)
        assert document is not None
        template = parse_template(document)
    saved = SavedTemplate(
        id=uuid.uuid4(),
        title=title,
        summary=summary,
        document=template.model_dump(mode="json"),
        source_study_id=from_study_id,
        created_by=principal.user_id,
        created_at=utcnow(),
    )
    session.add(saved)
    await session.flush()
    await record_about(session, context, _subject(saved), "template.create", after=_snapshot(saved))
    return saved


def _visible(principal: StaffPrincipal) -> ColumnElement[bool]:
    if principal.is_admin:
        return true()
    return SavedTemplate.created_by == principal.user_id


async def list_saved(session: AsyncSession, principal: StaffPrincipal) -> Sequence[SavedTemplate]:
    """The saved templates the caller may see, newest first."""
    return (
        await session.scalars(
            select(SavedTemplate)
            .where(_visible(principal))
            .order_by(SavedTemplate.created_at.desc(), SavedTemplate.id)
        )
    ).all()


async def get_saved(
    session: AsyncSession, principal: StaffPrincipal, template_id: uuid.UUID
) -> SavedTemplate:
    """One saved template; another author's is "not found", like a missing one."""
    template = await session.get(SavedTemplate, template_id)
    if template is None or not (principal.is_admin or template.created_by == principal.user_id):
        raise NotFoundError("Template not found")
    return template


async def delete_template(
    session: AsyncSession, context: AuditContext, principal: StaffPrincipal, template_id: str
) -> None:
    """Remove a saved template (its author or an administrator); studies made from it stay.
    A built-in's name is a conflict (they ship with the server), anything else not found."""
    try:
        saved_id = uuid.UUID(template_id)
    except ValueError:
        if template_id in {builtin.id for builtin in builtin_templates()}:
            raise ConflictError(
                "Built-in templates cannot be deleted", details={"reason": "BUILTIN_TEMPLATE"}
            ) from None
        raise NotFoundError("Template not found") from None
    template = await get_saved(session, principal, saved_id)
    before = _snapshot(template)
    await session.delete(template)
    await session.flush()
    await record_about(session, context, _subject(template), "template.delete", before=before)
