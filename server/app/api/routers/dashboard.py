"""The dashboard (docs/dashboard.md): figures about the caller's studies, read-only."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from app.api.dependencies import CurrentUser, SessionDep
from app.schemas.dashboard import DashboardRead, StudyDashboardRead
from app.services.dashboard import overview

router = APIRouter(prefix="/dashboard", tags=["dashboard"])


@router.get("")
async def read_dashboard(principal: CurrentUser, session: SessionDep) -> DashboardRead:
    """The caller's active and paused studies in summary (a site-scoped member's figures count
    their site only), the latest activity and the first upcoming and overdue visits."""
    return await overview.dashboard(session, principal)


@router.get("/studies/{study_id:uuid}")
async def read_study_dashboard(
    study_id: uuid.UUID, principal: CurrentUser, session: SessionDep
) -> StudyDashboardRead:
    """One study in full: the summary, adherence per site, data quality (flags, sync lag),
    integration backlogs, activity and visits. 404 for a study the caller cannot see."""
    return await overview.study_dashboard(session, principal, study_id)
