from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from app.api.dependencies import (
    ActorContextDep,
    CurrentUser,
    PageParamsDep,
    SessionDep,
    SessionStoreDep,
)
from app.api.openapi import error_responses
from app.schemas.auth import RevokedCount, UserSessionRead
from app.schemas.common import Page
from app.services import user_sessions as service

router = APIRouter(prefix="/user-sessions", tags=["user-sessions"])


@router.get("", responses=error_responses(404))
async def list_sessions(
    principal: CurrentUser,
    session: SessionDep,
    page: PageParamsDep,
    user_id: uuid.UUID | None = None,
    include_revoked: bool = False,
) -> Page[UserSessionRead]:
    """My login sessions; administrators may pass `user_id` to list anyone's."""
    rows, pagination = await service.list_login_sessions(
        session, principal, page, user_id=user_id, include_revoked=include_revoked
    )
    data = [
        UserSessionRead.model_validate(row).model_copy(
            update={"current": row.id == principal.session_id}
        )
        for row in rows
    ]
    return Page[UserSessionRead](data=data, pagination=pagination)


@router.delete("/{session_id:uuid}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_session(
    session_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    store: SessionStoreDep,
    context: ActorContextDep,
) -> None:
    await service.revoke_login_session(session, store, context, principal, session_id)


@router.post("/revoke-others")
async def revoke_others(
    principal: CurrentUser, session: SessionDep, store: SessionStoreDep, context: ActorContextDep
) -> RevokedCount:
    return RevokedCount(
        revoked=await service.revoke_other_sessions(session, store, context, principal)
    )
