"""Exports (docs/exports.md): jobs that write a study's data to a file in the `exports` queue,
their status and progress, download and deletion. The study's `export` capability throughout."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.responses import StreamingResponse

from app.api.dependencies import ActorContextDep, CurrentUser, SessionDep, SettingsDep
from app.api.openapi import error_responses
from app.models.export import ExportJob
from app.schemas.exports import ExportCreate, ExportProgress, ExportRead
from app.services.exports import jobs as service
from app.services.exports.scope import ExportFilters

router = APIRouter(prefix="/exports", tags=["exports"])


def _read(job: ExportJob) -> ExportRead:
    total = job.rows_total
    percent = None
    if total is not None:
        percent = 100.0 if total == 0 else round(min(job.rows_done, total) * 100.0 / total, 1)
    return ExportRead(
        id=job.id,
        study_id=job.study_id,
        site_id=job.scope_site_id,
        created_by=job.created_by,
        format=job.format,
        dataset=job.dataset,
        filters=job.filters,
        include_pii=job.include_contact_details,
        status=job.status,
        progress=ExportProgress(rows_done=job.rows_done, rows_total=total, percent=percent),
        file_name=job.file_name,
        size_bytes=job.size_bytes,
        sha256=job.sha256,
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        expires_at=job.expires_at,
    )


@router.post("", status_code=status.HTTP_202_ACCEPTED, responses=error_responses(403, 404, 422))
async def create_export(
    body: ExportCreate, principal: CurrentUser, session: SessionDep, context: ActorContextDep
) -> ExportRead:
    """Queue an export job; poll `GET /api/exports/{id}` until `ready`, then download."""
    filters = body.filters
    job = await service.create_export(
        session,
        context,
        principal,
        service.ExportRequest(
            study_id=body.study_id,
            format=body.format,
            dataset=body.dataset,
            filters=ExportFilters(
                site_ids=filters.site_ids,
                participant_ids=filters.participant_ids,
                visit_keys=filters.visit_keys,
                started_from=filters.started_from,
                started_to=filters.started_to,
                tasks=filters.tasks,
            ),
            include_contact_details=body.include_pii,
        ),
    )
    await session.flush()
    await session.refresh(job)
    return _read(job)


@router.get("", responses=error_responses(403, 404))
async def list_exports(
    principal: CurrentUser,
    session: SessionDep,
    study_id: Annotated[uuid.UUID, Query()],
) -> list[ExportRead]:
    """The study's export jobs, newest first (at most 100)."""
    return [_read(job) for job in await service.list_exports(session, principal, study_id)]


@router.get("/{export_id}", responses=error_responses(403, 404))
async def get_export(
    export_id: uuid.UUID, principal: CurrentUser, session: SessionDep
) -> ExportRead:
    return _read(await service.get_export(session, principal, export_id))


@router.get(
    "/{export_id}/download",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/zip": {}}},
        **error_responses(403, 404, 409, 410),
    },
)
async def download_export(
    export_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    context: ActorContextDep,
) -> StreamingResponse:
    """The export's zip, streamed; `X-Content-SHA256` holds its hash."""
    download = await service.download_export(session, settings, context, principal, export_id)
    job = download.job
    return StreamingResponse(
        download.chunks,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{job.file_name}"',
            "Content-Length": str(job.size_bytes),
            "X-Content-SHA256": job.sha256 or "",
        },
    )


@router.delete("/{export_id}", responses=error_responses(403, 404, 409))
async def delete_export(
    export_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    context: ActorContextDep,
) -> ExportRead:
    """Remove the file now (the job stays, `deleted`)."""
    return _read(await service.delete_export(session, settings, context, principal, export_id))
