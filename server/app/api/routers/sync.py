"""Offline sync: rules in app.services.sync, endpoints and decisions in docs/sync.md."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api.dependencies import (
    AnyActorContextDep,
    AnyPrincipal,
    ParticipantQuery,
    SessionDep,
    SessionStoreDep,
    StorageDep,
)
from app.core.clock import utcnow
from app.schemas.common import ErrorEnvelope
from app.schemas.sync import SyncManifest, SyncRequest, SyncResponse
from app.services import sync as sync_service

router = APIRouter(prefix="/sync", tags=["sync"])


async def get_item_sessionmaker(request: Request) -> sync_service.ItemSessionFactory:
    """Where each batch item opens its own session. Tests override it (tests/sync/conftest.py)."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sessionmaker


ItemSessionsDep = Annotated[sync_service.ItemSessionFactory, Depends(get_item_sessionmaker)]

_MANIFEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"headers": {"ETag": {"description": "Strong: the SHA-256 of the canonical content"}}},
    304: {"description": "`If-None-Match` matched: the device's copy is current"},
    404: {"model": ErrorEnvelope, "description": "Not found or not visible to the caller"},
}


@router.get("/manifest", response_model=SyncManifest, responses=_MANIFEST_RESPONSES)
async def manifest(
    response: Response,
    principal: AnyPrincipal,
    session: SessionDep,
    participant_id: ParticipantQuery = None,
    study_id: uuid.UUID | None = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> SyncManifest | Response:
    """What a device needs to work offline: a participant token reads its own; staff give
    `participant_id` (the UUID, or the code with `study_id`)."""
    built = await sync_service.build_manifest(session, principal, participant_id, study_id)
    headers = {"ETag": built.etag, "Cache-Control": "private, no-cache"}
    if sync_service.etag_matches(if_none_match, built.etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    response.headers.update(headers)
    return built.content


@router.post(
    "",
    responses={
        413: {"model": ErrorEnvelope, "description": "The body is over the request size limit"}
    },
)
async def sync(
    body: SyncRequest,
    principal: AnyPrincipal,
    session: SessionDep,
    item_sessions: ItemSessionsDep,
    store: SessionStoreDep,
    storage: StorageDep,
    context: AnyActorContextDep,
) -> SyncResponse:
    """Apply a batch of queued work; each item in its own transaction, each answered
    `accepted`, `duplicate`, `conflict` or `rejected`."""
    received_at = utcnow()
    # The request's session only authenticated the caller. Ending its transaction now keeps it
    # from holding locks (SQLite's write lock above all) while the items run in theirs.
    await session.commit()
    items = await sync_service.apply_batch(
        item_sessions,
        store,
        storage,
        context,
        principal,
        body.items,
        client_time=body.client_time,
        received_at=received_at,
    )
    return SyncResponse(server_time=utcnow(), items=items)
