from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from app.api.dependencies import (
    ActorContextDep,
    AdminUser,
    CurrentUser,
    EncryptorDep,
    PrincipalAllowingPasswordChange,
    RequestAuditContextDep,
    SessionDep,
    SessionStoreDep,
    SettingsDep,
)
from app.api.openapi import error_responses
from app.models.audit import ActorType
from app.schemas.auth import (
    ChangePasswordRequest,
    LoginRequest,
    LoginResponse,
    MfaRequiredResponse,
    MfaVerifyRequest,
    PasswordConfirmRequest,
    RefreshRequest,
    RegisterRequest,
    RegisterResponse,
    TokensRead,
    TotpCodeRequest,
    TotpSetupResponse,
    UserDetailRead,
    UserRead,
)
from app.services import auth as auth_service
from app.services import users as users_service

router = APIRouter(prefix="/auth", tags=["auth"])

_LOGIN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": LoginRequest.model_json_schema()},
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["username", "password"],
                    "properties": {
                        "username": {"type": "string", "description": "The email address"},
                        "password": {"type": "string", "format": "password"},
                    },
                }
            },
        },
    }
}


async def _read_login(request: Request) -> LoginRequest:
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            return LoginRequest.model_validate(
                {"email": form.get("username"), "password": form.get("password")}
            )
        return LoginRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from exc


def login_response(outcome: auth_service.LoginOutcome) -> LoginResponse:
    assert outcome.tokens is not None
    tokens = TokensRead(
        access_token=outcome.tokens.access_token,
        refresh_token=outcome.tokens.refresh_token,
        expires_in=outcome.tokens.expires_in,
    )
    return LoginResponse(
        user=UserRead.model_validate(outcome.user),
        tokens=tokens,
        access_token=tokens.access_token,
        must_change_password=outcome.user.must_change_password,
    )


@router.post(
    "/login",
    openapi_extra=_LOGIN_BODY,
    responses={200: {"model": LoginResponse | MfaRequiredResponse}, **error_responses(401, 423)},
)
async def login(
    request: Request,
    session: SessionDep,
    store: SessionStoreDep,
    settings: SettingsDep,
    context: RequestAuditContextDep,
) -> Any:
    """Sign in with JSON `{email, password}` or the OAuth2 password form (Swagger's Authorize)."""
    body = await _read_login(request)
    outcome = await auth_service.login(
        session,
        store,
        settings,
        context,
        email=body.email,
        password=body.password,
        device=request.headers.get("user-agent"),
    )
    if outcome.mfa_token is not None:
        return MfaRequiredResponse(mfa_token=outcome.mfa_token)
    return login_response(outcome)


@router.post("/2fa/verify", responses=error_responses(401, 423))
async def verify_mfa(
    body: MfaVerifyRequest,
    session: SessionDep,
    store: SessionStoreDep,
    settings: SettingsDep,
    context: RequestAuditContextDep,
    encryptor: EncryptorDep,
) -> LoginResponse:
    outcome = await auth_service.complete_mfa_login(
        session, store, settings, context, encryptor, mfa_token=body.mfa_token, code=body.code
    )
    return login_response(outcome)


@router.post("/refresh", responses=error_responses(401))
async def refresh(
    body: RefreshRequest,
    session: SessionDep,
    store: SessionStoreDep,
    settings: SettingsDep,
    context: RequestAuditContextDep,
) -> TokensRead:
    pair = await auth_service.refresh_tokens(
        session, store, settings, context, refresh_token=body.refresh_token
    )
    return TokensRead(
        access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in
    )


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    principal: PrincipalAllowingPasswordChange,
    session: SessionDep,
    store: SessionStoreDep,
    context: RequestAuditContextDep,
) -> None:
    await auth_service.logout(
        session, store, context.as_actor(ActorType.USER, str(principal.user_id)), principal
    )


@router.get("/me")
async def me(principal: PrincipalAllowingPasswordChange, session: SessionDep) -> UserDetailRead:
    return UserDetailRead.model_validate(await users_service.current_user(session, principal))


@router.post("/change-password", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(
    body: ChangePasswordRequest,
    principal: PrincipalAllowingPasswordChange,
    session: SessionDep,
    store: SessionStoreDep,
    context: RequestAuditContextDep,
) -> None:
    await auth_service.change_password(
        session,
        store,
        context.as_actor(ActorType.USER, str(principal.user_id)),
        principal,
        current_password=body.current_password,
        new_password=body.new_password,
    )


@router.post("/accept-terms")
async def accept_terms(
    principal: CurrentUser, session: SessionDep, context: ActorContextDep
) -> UserDetailRead:
    return UserDetailRead.model_validate(
        await auth_service.accept_terms(session, context, principal)
    )


@router.post("/register", status_code=status.HTTP_201_CREATED, responses=error_responses(409))
async def register(
    body: RegisterRequest, _: AdminUser, session: SessionDep, context: ActorContextDep
) -> RegisterResponse:
    """Create a staff account with a temporary password that must be changed at first sign-in,
    or (`sso_only`) one without a password that signs in through single sign-on."""
    created = await users_service.create_user(
        session,
        context,
        email=body.email,
        name=body.name,
        role=body.role,
        password=body.password,
        sso_only=body.sso_only,
    )
    return RegisterResponse(
        user=UserDetailRead.model_validate(created.user),
        temporary_password=created.temporary_password,
    )


@router.post("/2fa/setup")
async def setup_totp(
    principal: CurrentUser, session: SessionDep, context: ActorContextDep, encryptor: EncryptorDep
) -> TotpSetupResponse:
    setup = await auth_service.setup_totp(session, encryptor, context, principal)
    return TotpSetupResponse(secret=setup.secret, otpauth_uri=setup.otpauth_uri)


@router.post("/2fa/enable", status_code=status.HTTP_204_NO_CONTENT)
async def enable_totp(
    body: TotpCodeRequest,
    principal: CurrentUser,
    session: SessionDep,
    store: SessionStoreDep,
    context: ActorContextDep,
    encryptor: EncryptorDep,
) -> None:
    await auth_service.enable_totp(session, store, encryptor, context, principal, code=body.code)


@router.post("/2fa/disable", status_code=status.HTTP_204_NO_CONTENT)
async def disable_totp(
    body: PasswordConfirmRequest,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
) -> None:
    await auth_service.disable_totp(session, context, principal, password=body.password)
