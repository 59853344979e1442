"""Exports (docs/exports.md): jobs that write a study's data to a file in the `exports` queue,
their status and progress, download and deletion. The study's `export` capability throughout."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import Response, StreamingResponse
from pydantic import AwareDatetime
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api.dependencies import ActorContextDep, CurrentUser, SessionDep, SettingsDep
from app.api.downloads import download_responses, file_response
from app.api.openapi import error_responses
from app.core.clock import utcnow
from app.models.export import ExportJob
from app.schemas.exports import ExportCreate, ExportProgress, ExportRead
from app.services.exports import jobs as service
from app.services.exports import streaming
from app.services.exports.scope import ExportFilters

router = APIRouter(prefix="/exports", tags=["exports"])


def _read(job: ExportJob) -> ExportRead:
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
        progress=ExportProgress.of(job.rows_done, job.rows_total),
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


async def get_stream_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A read-only session that stays open while a streamed response is sent (the default,
    request scope), apart from the request's own transaction, which commits the audit event
    before the first byte."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        await session.connection(execution_options={"sqlite_deferred": True})
        yield session


StreamSessionDep = Annotated[AsyncSession, Depends(get_stream_session)]
IdList = Annotated[list[uuid.UUID] | None, Query()]
KeyList = Annotated[list[str] | None, Query(max_length=200)]


@router.get(
    "/studies/{study_id}/trials.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}, **error_responses(403, 404, 422)},
)
async def stream_trials_csv(
    study_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
    stream_session: StreamSessionDep,
    site_id: IdList = None,
    participant_id: IdList = None,
    visit_key: KeyList = None,
    task: KeyList = None,
    started_from: Annotated[AwareDatetime | None, Query()] = None,
    started_to: Annotated[AwareDatetime | None, Query()] = None,
    spreadsheet_safe: bool = True,
) -> StreamingResponse:
    """The study's trials as CSV, streamed as the database produces them (constant memory):
    the columns of the export jobs' trials table, with the same filters (repeat a parameter
    for several values). `spreadsheet_safe=false` keeps text cells exactly as stored."""
    filters = ExportFilters(
        site_ids=site_id or [],
        participant_ids=participant_id or [],
        visit_keys=visit_key or [],
        started_from=started_from,
        started_to=started_to,
        tasks=task or [],
    )
    scope = await service.authorize_trials_stream(
        session, context, principal, study_id, filters, spreadsheet_safe=spreadsheet_safe
    )
    stamp = utcnow().strftime("%Y%m%d")
    return StreamingResponse(
        streaming.trials_csv(stream_session, scope, spreadsheet_safe=spreadsheet_safe),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="trials-{study_id}-{stamp}.csv"'},
    )


@router.get("/{export_id}", responses=error_responses(403, 404))
async def get_export(
    export_id: uuid.UUID, principal: CurrentUser, session: SessionDep
) -> ExportRead:
    return _read(await service.get_export(session, principal, export_id))


@router.get(
    "/{export_id}/download",
    response_class=StreamingResponse,
    responses={**download_responses("application/zip"), **error_responses(403, 404, 409, 410)},
)
async def download_export(
    export_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    context: ActorContextDep,
) -> Response:
    """The export's zip, streamed; `X-Content-SHA256` holds its hash. With object storage the
    answer is a 307 redirect to a short-lived signed address of the file in the bucket
    (docs/exports.md, storage); the download is audited either way."""
    download = await service.download_export(session, settings, context, principal, export_id)
    return file_response(download, "application/zip")


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
