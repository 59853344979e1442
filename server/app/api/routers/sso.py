"""Staff single sign-on through OpenID Connect providers (docs/accounts.md, single sign-on)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel

from app.api.dependencies import (
    RequestAuditContextDep,
    SessionDep,
    SessionStoreDep,
    SettingsDep,
)
from app.api.openapi import error_responses
from app.api.routers.auth import login_response
from app.schemas.auth import LoginResponse
from app.services.accounts import sso as sso_service

router = APIRouter(prefix="/auth/sso", tags=["auth"])


class SsoProviderRead(BaseModel):
    key: str
    name: str
    login_url: str


class SsoProviderList(BaseModel):
    data: list[SsoProviderRead]


@router.get("")
async def list_providers(settings: SettingsDep) -> SsoProviderList:
    """The identity providers staff may sign in with (for the sign-in page's buttons)."""
    return SsoProviderList(
        data=[
            SsoProviderRead(
                key=provider.key,
                name=provider.name,
                login_url=f"/api/auth/sso/{provider.key}/login",
            )
            for provider in sso_service.providers(settings)
        ]
    )


@router.get(
    "/{provider}/login",
    status_code=302,
    response_class=RedirectResponse,
    responses={302: {"description": "To the provider's sign-in page"}, **error_responses(404, 503)},
)
async def login(provider: str, store: SessionStoreDep, settings: SettingsDep) -> RedirectResponse:
    """Start a sign-in: a redirect to the provider with a fresh state, nonce and PKCE challenge."""
    location = await sso_service.start_login(store, settings, provider)
    return RedirectResponse(location, status_code=302, headers={"Cache-Control": "no-store"})


@router.get("/{provider}/callback", responses=error_responses(401, 404, 503))
async def callback(
    provider: str,
    request: Request,
    session: SessionDep,
    store: SessionStoreDep,
    settings: SettingsDep,
    context: RequestAuditContextDep,
    code: str | None = Query(default=None, max_length=4096),
    state: str | None = Query(default=None, max_length=512),
    error: str | None = Query(default=None, max_length=256),
) -> LoginResponse:
    """Where the provider sends the browser back: the API's own tokens, as after a password
    sign-in."""
    outcome = await sso_service.complete_login(
        session,
        store,
        settings,
        context,
        provider,
        code=code,
        state=state,
        provider_error=error,
        device=request.headers.get("user-agent"),
    )
    return login_response(outcome)
