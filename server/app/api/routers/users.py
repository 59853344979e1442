from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from app.api.dependencies import (
    ActorContextDep,
    AdminUser,
    PageParamsDep,
    SessionDep,
    SessionStoreDep,
)
from app.models.user import UserRole, UserStatus
from app.schemas.auth import UserDetailRead, UserUpdateRequest
from app.schemas.common import Page
from app.services import users as users_service

router = APIRouter(prefix="/users", tags=["users"])


@router.get("")
async def list_users(
    _: AdminUser,
    session: SessionDep,
    page: PageParamsDep,
    role: UserRole | None = None,
    status: UserStatus | None = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
) -> Page[UserDetailRead]:
    users, pagination = await users_service.list_users(session, page, role=role, status=status, q=q)
    return Page[UserDetailRead](
        data=[UserDetailRead.model_validate(user) for user in users], pagination=pagination
    )


@router.get("/{user_id:uuid}")
async def get_user(user_id: uuid.UUID, _: AdminUser, session: SessionDep) -> UserDetailRead:
    return UserDetailRead.model_validate(await users_service.get_user(session, user_id))


@router.patch("/{user_id:uuid}")
async def update_user(
    user_id: uuid.UUID,
    body: UserUpdateRequest,
    admin: AdminUser,
    session: SessionDep,
    store: SessionStoreDep,
    context: ActorContextDep,
) -> UserDetailRead:
    """Rename, change the role, disable (revokes every login session) or re-enable a user."""
    user = await users_service.update_user(
        session,
        store,
        context,
        user_id,
        acting_user_id=admin.user_id,
        name=body.name,
        role=body.role,
        status=body.status,
        reason=body.reason,
    )
    return UserDetailRead.model_validate(user)
