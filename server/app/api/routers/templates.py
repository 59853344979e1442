"""Study templates (docs/templates.md): built-ins, export, apply, and the document's schema."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, status

from app.api.dependencies import ActorContextDep, CurrentUser, SessionDep
from app.api.openapi import error_responses
from app.models.template import SavedTemplate
from app.schemas.studies import StudyRead, StudyStatsRead
from app.schemas.templates import (
    StudyTemplate,
    TemplateApplied,
    TemplateApply,
    TemplateCreate,
    TemplateImport,
    TemplateKind,
    TemplateRead,
    TemplateSummary,
)
from app.services import studies, templates
from app.services.templates import BuiltinTemplate, TemplateApplication
from app.services.templates.builtins import estimated_minutes

router = APIRouter(prefix="/templates", tags=["templates"])


def _summary(template: BuiltinTemplate) -> TemplateSummary:
    return TemplateSummary(
        id=template.id,
        kind=TemplateKind.BUILTIN,
        title=template.title,
        summary=template.summary,
        estimated_minutes=template.estimated_minutes,
    )


def _saved_summary(template: SavedTemplate) -> TemplateSummary:
    return TemplateSummary(
        id=str(template.id),
        kind=TemplateKind.SAVED,
        title=template.title,
        summary=template.summary,
        estimated_minutes=estimated_minutes(template.document),
        source_study_id=template.source_study_id,
        created_at=template.created_at,
    )


async def _document(
    session: SessionDep, principal: CurrentUser, template_id: str
) -> tuple[TemplateSummary, dict[str, Any]]:
    """A built-in by its name, or a saved template by its UUID."""
    try:
        saved_id = uuid.UUID(template_id)
    except ValueError:
        builtin = templates.builtin_template(template_id)
        return _summary(builtin), builtin.normalized()
    saved = await templates.get_saved(session, principal, saved_id)
    return _saved_summary(saved), saved.document


async def _applied(
    session: SessionDep, principal: CurrentUser, application: TemplateApplication
) -> TemplateApplied:
    view = (await studies.study_views(session, principal, [application.study]))[0]
    return TemplateApplied(
        study=StudyRead.from_study(
            view.study, view.role, StudyStatsRead.model_validate(view.stats)
        ),
        battery_ids=application.battery_ids,
        schedule_id=application.schedule_id,
        consent_form_ids=application.consent_form_ids,
        not_applied=application.not_applied,
    )


@router.get("")
async def list_templates(principal: CurrentUser, session: SessionDep) -> list[TemplateSummary]:
    """The built-in templates, then the saved ones the caller may see (theirs; all for an
    administrator), newest first."""
    builtins = [_summary(template) for template in templates.builtin_templates()]
    saved = [_saved_summary(t) for t in await templates.list_saved(session, principal)]
    return builtins + saved


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(403, 404, 409))
async def save_template(
    body: TemplateCreate, principal: CurrentUser, session: SessionDep, context: ActorContextDep
) -> TemplateRead:
    """Keep a template on the server, made from a study (`from_study_id`, configure_study
    there) or from a document; problems in a document name their path in it."""
    saved = await templates.save_template(
        session,
        context,
        principal,
        title=body.title,
        summary=body.summary,
        from_study_id=body.from_study_id,
        document=body.document,
    )
    return TemplateRead(**_saved_summary(saved).model_dump(), document=saved.document)


@router.get("/schema")
async def template_schema(principal: CurrentUser) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a template document."""
    return templates.template_schema()


@router.get("/export", responses=error_responses(404, 409))
async def export_study(
    study_id: uuid.UUID, principal: CurrentUser, session: SessionDep
) -> StudyTemplate:
    """The study's configuration as a template document (those who configure the study)."""
    return await templates.export_study(session, principal, study_id)


@router.post("/apply", status_code=status.HTTP_201_CREATED, responses=error_responses(409))
async def apply_document(
    body: TemplateImport, principal: CurrentUser, session: SessionDep, context: ActorContextDep
) -> TemplateApplied:
    """A new draft study from a template file; problems name their path in `document`."""
    application = await templates.apply_template(
        session, context, principal, code=body.code, name=body.name, document=body.document
    )
    return await _applied(session, principal, application)


@router.get("/{template_id}", responses=error_responses(404))
async def get_template(
    template_id: str, principal: CurrentUser, session: SessionDep
) -> TemplateRead:
    """A built-in (by name) or a saved template (by id) with its document."""
    summary, document = await _document(session, principal, template_id)
    return TemplateRead(**summary.model_dump(), document=document)


@router.delete(
    "/{template_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404, 409)
)
async def delete_template(
    template_id: str, principal: CurrentUser, session: SessionDep, context: ActorContextDep
) -> None:
    """Remove a saved template (its author or an administrator); studies made from it stay.
    A built-in cannot be removed (409)."""
    await templates.delete_template(session, context, principal, template_id)


@router.post(
    "/{template_id}/apply", status_code=status.HTTP_201_CREATED, responses=error_responses(409)
)
async def apply_builtin(
    template_id: str,
    body: TemplateApply,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
) -> TemplateApplied:
    """A new draft study from a built-in (by name) or a saved template (by id)."""
    _, document = await _document(session, principal, template_id)
    application = await templates.apply_template(
        session, context, principal, code=body.code, name=body.name, document=document
    )
    return await _applied(session, principal, application)
