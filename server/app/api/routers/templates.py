"""Study templates (docs/templates.md): built-ins, export, apply, and the document's schema."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, status

from app.api.dependencies import ActorContextDep, CurrentUser, SessionDep
from app.api.openapi import error_responses
from app.schemas.studies import StudyRead, StudyStatsRead
from app.schemas.templates import (
    BuiltinTemplateRead,
    BuiltinTemplateSummary,
    StudyTemplate,
    TemplateApplied,
    TemplateApply,
    TemplateImport,
)
from app.services import studies, templates
from app.services.templates import BuiltinTemplate, TemplateApplication

router = APIRouter(prefix="/templates", tags=["templates"])


def _summary(template: BuiltinTemplate) -> BuiltinTemplateSummary:
    return BuiltinTemplateSummary(
        id=template.id,
        title=template.title,
        summary=template.summary,
        estimated_minutes=template.estimated_minutes,
    )


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
async def list_templates(principal: CurrentUser) -> list[BuiltinTemplateSummary]:
    """The built-in templates."""
    return [_summary(template) for template in templates.builtin_templates()]


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


@router.get("/{template_id}")
async def get_template(template_id: str, principal: CurrentUser) -> BuiltinTemplateRead:
    template = templates.builtin_template(template_id)
    return BuiltinTemplateRead(**_summary(template).model_dump(), document=template.normalized())


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
    """A new draft study from a built-in template."""
    template = templates.builtin_template(template_id)
    application = await templates.apply_template(
        session, context, principal, code=body.code, name=body.name, document=template.document
    )
    return await _applied(session, principal, application)
