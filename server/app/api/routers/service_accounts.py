"""Service accounts for integrations, managed by administrators (docs/accounts.md)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from app.api.dependencies import ActorContextDep, AdminUser, PageParamsDep, SessionDep, SettingsDep
from app.api.openapi import error_responses
from app.models.user import UserRole
from app.schemas.access_tokens import AccessTokenCreate, AccessTokenCreated, AccessTokenRead
from app.schemas.common import Page
from app.schemas.service_accounts import ServiceAccountCreate, ServiceAccountRead
from app.services.accounts import service_accounts as service

router = APIRouter(prefix="/service-accounts", tags=["service accounts"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_service_account(
    body: ServiceAccountCreate, admin: AdminUser, session: SessionDep, context: ActorContextDep
) -> ServiceAccountRead:
    """A user without a password that acts only through access tokens; the caller owns it."""
    account = await service.create_service_account(
        session, context, admin, name=body.name, role=UserRole(body.role)
    )
    return ServiceAccountRead.model_validate(account)


@router.get("")
async def list_service_accounts(
    admin: AdminUser, session: SessionDep, page: PageParamsDep, include_disabled: bool = False
) -> Page[ServiceAccountRead]:
    accounts, pagination = await service.list_service_accounts(
        session, page, include_disabled=include_disabled
    )
    return Page[ServiceAccountRead](
        data=[ServiceAccountRead.model_validate(account) for account in accounts],
        pagination=pagination,
    )


@router.get("/{account_id:uuid}", responses=error_responses(404))
async def get_service_account(
    account_id: uuid.UUID, admin: AdminUser, session: SessionDep
) -> ServiceAccountRead:
    return ServiceAccountRead.model_validate(await service.get_service_account(session, account_id))


@router.post("/{account_id:uuid}/disable", responses=error_responses(404))
async def disable_service_account(
    account_id: uuid.UUID, admin: AdminUser, session: SessionDep, context: ActorContextDep
) -> ServiceAccountRead:
    """Its access tokens are refused from the next request."""
    account = await service.disable_service_account(session, context, account_id)
    return ServiceAccountRead.model_validate(account)


@router.post(
    "/{account_id:uuid}/access-tokens",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(404),
)
async def create_service_account_token(
    account_id: uuid.UUID,
    body: AccessTokenCreate,
    admin: AdminUser,
    session: SessionDep,
    settings: SettingsDep,
    context: ActorContextDep,
) -> AccessTokenCreated:
    """A token acting as the service account, within its rights; the secret is shown once.
    Listed and revoked like any token (`GET /api/access-tokens?user_id=`, `DELETE
    /api/access-tokens/{id}`)."""
    created = await service.create_access_token(
        session,
        settings,
        context,
        account_id,
        name=body.name,
        scopes=body.scopes,
        expires_in_days=body.expires_in_days,
    )
    read = AccessTokenRead.model_validate(created.token)
    return AccessTokenCreated(**read.model_dump(), token=created.secret)
