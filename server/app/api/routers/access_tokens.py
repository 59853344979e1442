"""Personal access tokens for scripts (docs/accounts.md, personal access tokens)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from app.api.dependencies import (
    ActorContextDep,
    CurrentUser,
    PageParamsDep,
    SessionDep,
    SettingsDep,
)
from app.api.openapi import error_responses
from app.schemas.access_tokens import AccessTokenCreate, AccessTokenCreated, AccessTokenRead
from app.schemas.common import Page
from app.services.accounts import access_tokens as service

router = APIRouter(prefix="/access-tokens", tags=["access tokens"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_access_token(
    body: AccessTokenCreate,
    principal: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    context: ActorContextDep,
) -> AccessTokenCreated:
    """A token for scripts, acting as the caller within its scopes; the secret is shown once."""
    created = await service.create_token(
        session,
        settings,
        context,
        principal,
        name=body.name,
        scopes=body.scopes,
        expires_in_days=body.expires_in_days,
    )
    read = AccessTokenRead.model_validate(created.token)
    return AccessTokenCreated(**read.model_dump(), token=created.secret)


@router.get("")
async def list_access_tokens(
    principal: CurrentUser,
    session: SessionDep,
    page: PageParamsDep,
    user_id: uuid.UUID | None = None,
    include_revoked: bool = False,
) -> Page[AccessTokenRead]:
    """The caller's tokens with their last use; administrators pass `user_id` for anyone's."""
    tokens, pagination = await service.list_tokens(
        session, principal, page, user_id=user_id, include_revoked=include_revoked
    )
    return Page[AccessTokenRead](
        data=[AccessTokenRead.model_validate(token) for token in tokens], pagination=pagination
    )


@router.delete(
    "/{token_id:uuid}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404)
)
async def revoke_access_token(
    token_id: uuid.UUID, principal: CurrentUser, session: SessionDep, context: ActorContextDep
) -> None:
    await service.revoke_token(session, context, principal, token_id)
