"""PDF reports (docs/reports.md): a participant's results or a study's progress, made by the
worker of the `exports` queue as export jobs of their own kind. The study's `export`
capability throughout, as for exports."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Query, status
from fastapi.responses import Response, StreamingResponse

from app.api.dependencies import ActorContextDep, CurrentUser, SessionDep, SettingsDep
from app.api.downloads import download_responses, file_response
from app.api.openapi import error_responses
from app.models.export import ExportJob, ExportStatus
from app.schemas.exports import ExportProgress
from app.schemas.reports import ParticipantReportCreate, ReportRead, StudyReportCreate
from app.services.exports import jobs
from app.services.exports.jobs import PARTICIPANT_REPORT, REPORTS
from app.services.reports import jobs as service

router = APIRouter(prefix="/reports", tags=["reports"])


def _read(job: ExportJob) -> ReportRead:
    participant_ids = job.filters.get("participant_ids") or []
    ready = job.status == ExportStatus.READY
    return ReportRead(
        id=job.id,
        kind="participant" if job.dataset == PARTICIPANT_REPORT else "study",
        study_id=job.study_id,
        participant_id=uuid.UUID(participant_ids[0]) if participant_ids else None,
        site_id=job.scope_site_id,
        created_by=job.created_by,
        include_pii=job.include_contact_details,
        status=job.status,
        progress=ExportProgress.of(job.rows_done, job.rows_total),
        file_name=job.file_name,
        size_bytes=job.size_bytes,
        sha256=job.sha256,
        error=job.error,
        download_url=f"/api/reports/{job.id}/download" if ready else None,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        expires_at=job.expires_at,
    )


async def _fresh(session: SessionDep, job: ExportJob) -> ReportRead:
    await session.flush()
    await session.refresh(job)
    return _read(job)


@router.post(
    "/studies/{study_id}/participants/{participant_id}",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(403, 404, 409, 422),
)
async def create_participant_report(
    study_id: uuid.UUID,
    participant_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
    body: Annotated[ParticipantReportCreate | None, Body()] = None,
) -> ReportRead:
    """Queue a participant's report; poll `GET /api/reports/{id}` until `ready`, then download.
    409 for a participant who withdrew with deletion of their data."""
    job = await service.create_participant_report(
        session,
        context,
        principal,
        study_id,
        participant_id,
        include_contact_details=body.include_pii if body else False,
    )
    return await _fresh(session, job)


@router.post(
    "/studies/{study_id}",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(403, 404, 422),
)
async def create_study_report(
    study_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
    body: Annotated[StudyReportCreate | None, Body()] = None,
) -> ReportRead:
    """Queue the study's report (the caller's site only when they are site-scoped)."""
    job = await service.create_study_report(session, context, principal, study_id)
    return await _fresh(session, job)


@router.get("", responses=error_responses(403, 404))
async def list_reports(
    principal: CurrentUser,
    session: SessionDep,
    study_id: Annotated[uuid.UUID, Query()],
) -> list[ReportRead]:
    """The study's reports, newest first (at most 100)."""
    found = await jobs.list_exports(session, principal, study_id, family=REPORTS)
    return [_read(job) for job in found]


@router.get("/{report_id}", responses=error_responses(403, 404))
async def get_report(
    report_id: uuid.UUID, principal: CurrentUser, session: SessionDep
) -> ReportRead:
    return _read(await jobs.get_export(session, principal, report_id, REPORTS))


@router.get(
    "/{report_id}/download",
    response_class=StreamingResponse,
    responses={**download_responses("application/pdf"), **error_responses(403, 404, 409, 410)},
)
async def download_report(
    report_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    context: ActorContextDep,
) -> Response:
    """The report's PDF, streamed; `X-Content-SHA256` holds its hash. 409 until it is ready,
    410 once it expired or was deleted. With object storage the answer is a 307 redirect to a
    short-lived signed address of the file, as for exports (docs/exports.md, storage)."""
    download = await jobs.download_export(session, settings, context, principal, report_id, REPORTS)
    return file_response(download, "application/pdf")


@router.delete("/{report_id}", responses=error_responses(403, 404, 409))
async def delete_report(
    report_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    context: ActorContextDep,
) -> ReportRead:
    """Remove the file now (the report stays, `deleted`)."""
    job = await jobs.delete_export(session, settings, context, principal, report_id, REPORTS)
    return _read(job)
