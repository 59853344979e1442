"""`Annotated` dependencies the routers declare: `SessionDep`, `SettingsDep`, ...

Every dependency is `async def`: FastAPI runs a plain `def` dependency in its thread pool, a
thread hop per dependency per request for functions that never block."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api.client_ip import client_ip
from app.config import Settings
from app.core.errors import ForbiddenError, UnauthorizedError
from app.core.security import FieldEncryptor, InvalidTokenError, TokenType, decode_token
from app.db.session import transaction_scope
from app.models.audit import ActorType
from app.models.user import UserRole
from app.schemas.common import PageParams, Reference, SortOrder
from app.services.accounts.access_tokens import (
    authenticate_personal_access_token,
    is_personal_access_token,
)
from app.services.audit import AuditContext
from app.services.auth import authenticate_access_claims, mark_changed_users
from app.services.participant_auth import authenticate_participant_claims
from app.services.principals import ParticipantPrincipal, Principal, StaffPrincipal
from app.services.session_store import SessionStore
from app.services.source_storage import SourceStorage


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session_store(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.session_store
    return store


async def get_page_params(
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 20,
    sort: Annotated[str | None, Query(max_length=64)] = None,
    order: Annotated[SortOrder, Query()] = "asc",
) -> PageParams:
    return PageParams(page=page, per_page=per_page, sort=sort, order=order)


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed before the response is sent, rolled back on error.

    Used through `SessionDep`, which asks FastAPI for `scope="function"`: the code after `yield`
    then runs before the response is sent, so a failed commit becomes an error response instead
    of a 2xx for a write that never happened.
    """
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session, request_transaction(request, session):
        yield session


@asynccontextmanager
async def request_transaction(request: Request, session: AsyncSession) -> AsyncIterator[None]:
    """The request's transaction (`transaction_scope`), then what must follow it: the accounts
    it changed get new version marks, so no cached principal shows them as they were."""
    try:
        async with transaction_scope(session):
            yield
    finally:
        await mark_changed_users(session, request.app.state.session_store)


# scope="function": commit before the response is sent (see get_db).
SessionDep = Annotated[AsyncSession, Depends(get_db, scope="function")]
# FastAPI's default ("request") scope: the session stays open until the response's background
# tasks have run, for routes that answer at once and do their lookup after (a sign-in link, a
# password reset: the answer must not depend on whether the address exists).
AfterResponseSessionDep = Annotated[AsyncSession, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionStoreDep = Annotated[SessionStore, Depends(get_session_store)]
PageParamsDep = Annotated[PageParams, Depends(get_page_params)]

# Query parameters naming a participant or a site the way a person types it (UUID or code).
ParticipantQuery = Annotated[
    Reference | None,
    Query(description="The participant's UUID, or its code within the request's study"),
]
SiteQuery = Annotated[
    Reference | None, Query(description="The site's UUID, or its code with study_id")
]


async def request_id(request: Request) -> str:
    value: str = request.scope.get("state", {}).get("request_id", "")
    return value


RequestIdDep = Annotated[str, Depends(request_id)]


def audit_context_of(request: Request) -> AuditContext:
    """Who sent the request, as far as the network says (the actor is added once known)."""
    settings: Settings = request.app.state.settings
    return AuditContext(
        actor_type=ActorType.ANONYMOUS,
        ip=client_ip(request.scope, settings.TRUSTED_PROXIES),
        user_agent=request.headers.get("user-agent"),
        request_id=request.scope.get("state", {}).get("request_id"),
    )


async def get_audit_context(request: Request) -> AuditContext:
    return audit_context_of(request)


async def get_encryptor(request: Request) -> FieldEncryptor:
    encryptor: FieldEncryptor | None = getattr(request.app.state, "encryptor", None)
    if encryptor is None:
        encryptor = FieldEncryptor.from_settings(request.app.state.settings)
        request.app.state.encryptor = encryptor
    return encryptor


RequestAuditContextDep = Annotated[AuditContext, Depends(get_audit_context)]
EncryptorDep = Annotated[FieldEncryptor, Depends(get_encryptor)]

# Swagger's Authorize button posts the OAuth2 form to the login route.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/login", auto_error=False)


# The principal dependencies take the application's settings and store from the request rather
# than as dependencies of their own: each sub-dependency costs FastAPI's solver a pass on every
# authenticated request, and these two never vary within an application.


async def get_principal_allowing_password_change(
    request: Request,
    session: SessionDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> StaffPrincipal:
    settings: Settings = request.app.state.settings
    if token and is_personal_access_token(token):
        return await _personal_access_token_principal(request, session, settings, token)
    claims = _access_claims(settings, token)
    if claims["typ"] == TokenType.PARTICIPANT_ACCESS:
        # A valid participant token is an authenticated caller without the right: 403, not 401,
        # so the client keeps its token. An invalid one is still 401.
        raise ForbiddenError("This route is for staff", details={"reason": "STAFF_ONLY"})
    store: SessionStore = request.app.state.session_store
    return await authenticate_access_claims(
        session, store, settings, audit_context_of(request), claims
    )


PrincipalAllowingPasswordChange = Annotated[
    StaffPrincipal, Depends(get_principal_allowing_password_change)
]


async def get_current_principal(principal: PrincipalAllowingPasswordChange) -> StaffPrincipal:
    if principal.must_change_password:
        raise ForbiddenError(
            "Change the temporary password first (POST /api/auth/change-password)",
            details={"reason": "PASSWORD_CHANGE_REQUIRED"},
        )
    return principal


CurrentUser = Annotated[StaffPrincipal, Depends(get_current_principal)]


async def get_actor_context(
    principal: CurrentUser, context: RequestAuditContextDep
) -> AuditContext:
    return context.as_actor(ActorType.USER, str(principal.user_id)).via_token(principal.token_id)


ActorContextDep = Annotated[AuditContext, Depends(get_actor_context)]


def require_role(*roles: UserRole) -> Callable[[StaffPrincipal], Awaitable[StaffPrincipal]]:
    allowed = frozenset(roles)

    async def check(principal: CurrentUser) -> StaffPrincipal:
        if principal.role not in allowed:
            raise ForbiddenError(
                "Your role does not allow this",
                details={"required_roles": sorted(role.value for role in allowed)},
            )
        return principal

    return check


AdminUser = Annotated[StaffPrincipal, Depends(require_role(UserRole.ADMIN))]


async def _personal_access_token_principal(
    request: Request,
    session: AsyncSession,
    settings: Settings,
    token: str,
) -> StaffPrincipal:
    """A personal access token (docs/accounts.md): the user, narrowed by the token's scopes."""
    return await authenticate_personal_access_token(
        session,
        settings,
        client_ip(request.scope, settings.TRUSTED_PROXIES),
        token,
        method=request.method,
        path=request.url.path,
    )


_ACCESS_TOKENS = frozenset({TokenType.ACCESS, TokenType.PARTICIPANT_ACCESS})


def _access_claims(settings: Settings, token: str | None) -> dict[str, Any]:
    """The verified claims of a staff or participant access token, decoded once per request;
    401 for anything else."""
    if not token:
        raise UnauthorizedError("Authentication required")
    try:
        return decode_token(settings, token, _ACCESS_TOKENS)
    except InvalidTokenError as exc:
        raise UnauthorizedError("The access token is invalid or has expired") from exc


async def get_any_principal(
    request: Request,
    session: SessionDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> Principal:
    """Staff or participant: for the routes both may call (sessions, consent, sync)."""
    settings: Settings = request.app.state.settings
    if token and is_personal_access_token(token):
        return await get_current_principal(
            await _personal_access_token_principal(request, session, settings, token)
        )
    claims = _access_claims(settings, token)
    if claims["typ"] == TokenType.PARTICIPANT_ACCESS:
        return await authenticate_participant_claims(session, claims)
    store: SessionStore = request.app.state.session_store
    principal = await authenticate_access_claims(
        session, store, settings, audit_context_of(request), claims
    )
    return await get_current_principal(principal)


async def get_current_participant(
    principal: Annotated[Principal, Depends(get_any_principal)],
) -> ParticipantPrincipal:
    if not isinstance(principal, ParticipantPrincipal):
        raise ForbiddenError("This route is for participants")
    return principal


AnyPrincipal = Annotated[Principal, Depends(get_any_principal)]
CurrentParticipant = Annotated[ParticipantPrincipal, Depends(get_current_participant)]


async def get_any_actor_context(
    principal: AnyPrincipal, context: RequestAuditContextDep
) -> AuditContext:
    if isinstance(principal, ParticipantPrincipal):
        return context.as_actor(ActorType.PARTICIPANT, str(principal.participant_id))
    return context.as_actor(ActorType.USER, str(principal.user_id)).via_token(principal.token_id)


AnyActorContextDep = Annotated[AuditContext, Depends(get_any_actor_context)]


async def get_storage(request: Request) -> SourceStorage:
    storage: SourceStorage | None = getattr(request.app.state, "storage", None)
    if storage is None:
        # Once per application; an S3 client's first build reads files: in a thread.
        storage = await asyncio.to_thread(SourceStorage.from_settings, request.app.state.settings)
        request.app.state.storage = storage
    return storage


StorageDep = Annotated[SourceStorage, Depends(get_storage)]

# What each dependency can refuse by itself, published on every operation that uses it, directly or
# through another dependency (app/api/openapi.py): `Depends` carries no responses of its own.
ERRORS_BY_DEPENDENCY: dict[Callable[..., object], tuple[int, ...]] = {
    get_db: (503,),  # the database is unreachable
    get_principal_allowing_password_change: (401, 403),  # 403: a participant token
    get_current_principal: (403,),  # the temporary password must be changed first
    get_any_principal: (401, 403),
    get_current_participant: (403,),  # a staff token
}
