"""Staff single sign-on with OpenID Connect (docs/accounts.md).

The authorization code flow with PKCE:

1. `start_login` makes a state, a nonce and a PKCE verifier, keeps them in the session store
   under the state (short-lived, single use) and returns the provider's authorization address,
   found through the provider's discovery document.
2. `complete_login` takes the state back out of the store (one use: the key is deleted, and only
   the caller whose delete removed it goes on), exchanges the code with the verifier at the
   token endpoint, and validates the id token: its signature against the provider's JWKS, then
   `iss`, `aud`, `exp`, `iat`, `azp` and the nonce with Authlib's OpenID Connect claims. The
   address must be verified (`email_verified`) and, when the provider lists domains, in one of
   them. The account is the one with that address, or a new one when the provider creates
   accounts; then a login session opens exactly as after a password sign-in.

Every refusal is one 401 with `details.reason`, audited as `user.sso_login_failed`.
"""

from __future__ import annotations

import functools
import secrets
import ssl
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import OidcProvider, Settings
from app.core.errors import NotFoundError, ServiceUnavailableError, UnauthorizedError
from app.core.logging import get_logger
from app.models.audit import ActorType, AuditCategory
from app.models.user import User, UserKind, UserRole, UserStatus
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.auth import LoginOutcome, normalize_email, open_login_session
from app.services.session_store import SessionStore
from app.services.users import user_snapshot

logger = get_logger(__name__)

# Asymmetric signatures only: a symmetric one would be keyed with our own client secret.
ID_TOKEN_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
CLOCK_LEEWAY_SECONDS = 60
FAILED = "Single sign-on failed"


class SsoRefusedError(UnauthorizedError):
    """A sign-in through the provider that is refused; `reason` says why (audited)."""

    def __init__(self, reason: str, message: str = FAILED, *, audited: bool = False) -> None:
        super().__init__(message, details={"reason": reason}, keep_changes=True)
        self.reason = reason
        # Already recorded with more detail (the account or the address) than the reason alone.
        self.audited = audited


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    key: str
    name: str


def providers(settings: Settings) -> list[ProviderInfo]:
    return [
        ProviderInfo(key=key, name=provider.display_name or key)
        for key, provider in sorted(settings.OIDC_PROVIDERS.items())
    ]


def _provider(settings: Settings, key: str) -> OidcProvider:
    provider = settings.OIDC_PROVIDERS.get(key)
    if provider is None:
        raise NotFoundError("Identity provider not found")
    return provider


def redirect_uri(settings: Settings, key: str, provider: OidcProvider) -> str:
    if provider.redirect_uri:
        return provider.redirect_uri
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}/api/auth/sso/{key}/callback"


def _state_key(state: str) -> str:
    return f"sso-state:{state}"


async def _get_json(client: httpx.AsyncClient, url: str, what: str) -> dict[str, Any]:
    try:
        response = await client.get(url, headers={"Accept": "application/json"})
        response.raise_for_status()
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        logger.warning("sso_provider_unreachable", document=what, error=type(exc).__name__)
        raise ServiceUnavailableError("The identity provider could not be reached") from exc
    if not isinstance(body, dict):
        raise ServiceUnavailableError("The identity provider answered something unexpected")
    return body


async def _discover(client: httpx.AsyncClient, provider: OidcProvider) -> dict[str, Any]:
    url = provider.issuer.rstrip("/") + "/.well-known/openid-configuration"
    metadata = await _get_json(client, url, "discovery")
    # OpenID Connect Discovery 4.3: the issuer in the document is the configured one, exactly.
    if metadata.get("issuer") != provider.issuer:
        logger.warning("sso_discovery_issuer_mismatch")
        raise ServiceUnavailableError("The identity provider's discovery document is not valid")
    for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(metadata.get(field), str):
            raise ServiceUnavailableError("The identity provider's discovery document is not valid")
    return metadata


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the trust store takes a good part of a sign-in's time: once per process.
    return ssl.create_default_context()


def _http_client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=settings.OIDC_HTTP_TIMEOUT_SECONDS, follow_redirects=False, verify=_tls_context()
    )


async def start_login(store: SessionStore, settings: Settings, key: str) -> str:
    """The provider's authorization address for a new sign-in; its state is kept server-side."""
    provider = _provider(settings, key)
    async with _http_client(settings) as client:
        metadata = await _discover(client, provider)
    state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    await store.set(
        _state_key(state),
        {"provider": key, "nonce": nonce, "verifier": verifier},
        settings.OIDC_LOGIN_EXPIRE_SECONDS,
    )
    query = urlencode(
        {
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": redirect_uri(settings, key, provider),
            "scope": " ".join(provider.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    endpoint = str(metadata["authorization_endpoint"])
    return endpoint + ("&" if "?" in endpoint else "?") + query


async def _take_state(store: SessionStore, key: str, state: str) -> dict[str, Any]:
    stored = await store.get(_state_key(state))
    # Single use: of concurrent callbacks with one state, only the one whose delete removed the
    # key goes on.
    if not isinstance(stored, dict) or not await store.delete(_state_key(state)):
        raise SsoRefusedError("invalid_state", "The sign-in is unknown, used or expired")
    if stored.get("provider") != key:
        raise SsoRefusedError("invalid_state", "The sign-in is unknown, used or expired")
    return stored


async def _exchange_code(
    client: httpx.AsyncClient,
    settings: Settings,
    key: str,
    provider: OidcProvider,
    metadata: dict[str, Any],
    *,
    code: str,
    verifier: str,
) -> dict[str, Any]:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri(settings, key, provider),
        "code_verifier": verifier,
    }
    secret = provider.client_secret.get_secret_value()
    methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    auth: httpx.BasicAuth | None = None
    if "client_secret_basic" in methods:
        auth = httpx.BasicAuth(provider.client_id, secret)
    else:
        form.update({"client_id": provider.client_id, "client_secret": secret})
    try:
        response = await client.post(
            str(metadata["token_endpoint"]),
            data=form,
            auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
            headers={"Accept": "application/json"},
        )
    except httpx.HTTPError as exc:
        logger.warning("sso_provider_unreachable", document="token", error=type(exc).__name__)
        raise ServiceUnavailableError("The identity provider could not be reached") from exc
    if response.status_code >= 500:
        raise ServiceUnavailableError("The identity provider could not be reached")
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        # 400 invalid_grant: a code used before, expired, or not issued for this verifier.
        error = body.get("error") if isinstance(body, dict) else None
        logger.info("sso_code_refused", status=response.status_code, error=str(error)[:64])
        raise SsoRefusedError("code_refused", "The identity provider refused the code")
    if not isinstance(body.get("id_token"), str):
        raise SsoRefusedError("no_id_token", "The identity provider returned no id token")
    return body


async def _validate_id_token(
    client: httpx.AsyncClient,
    provider: OidcProvider,
    metadata: dict[str, Any],
    tokens: dict[str, Any],
    *,
    nonce: str,
) -> CodeIDToken:
    jwks = await _get_json(client, str(metadata["jwks_uri"]), "jwks")
    try:
        keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise ServiceUnavailableError("The identity provider's keys are not valid") from exc
    try:
        decoded = jwt.decode(str(tokens["id_token"]), keys, algorithms=list(ID_TOKEN_ALGORITHMS))
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise SsoRefusedError("invalid_signature", "The id token's signature is not valid") from exc
    access_token = tokens.get("access_token")
    claims = CodeIDToken(
        decoded.claims,
        decoded.header,
        options={
            "iss": {"essential": True, "value": provider.issuer},
            "aud": {"essential": True, "value": provider.client_id},
        },
        params={
            "nonce": nonce,
            "client_id": provider.client_id,
            "access_token": access_token if isinstance(access_token, str) else None,
        },
    )
    try:
        claims.validate(leeway=CLOCK_LEEWAY_SECONDS)
    except JoseError as exc:
        claim = str(getattr(exc, "claim", None) or "claims").split(",")[0]
        raise SsoRefusedError(f"invalid_{claim}", f"The id token is not valid ({claim})") from exc
    return claims


async def _audit_failure(
    session: AsyncSession,
    context: AuditContext,
    key: str,
    reason: str,
    *,
    user_id: uuid.UUID | None = None,
    email: str | None = None,
) -> None:
    subject = AuditSubject.account(user_id) if user_id else AuditSubject(AuditCategory.AUTH)
    after: dict[str, Any] = {"provider": key, "reason": reason}
    if email is not None:
        after["email"] = email
    await record_about(session, context, subject, "user.sso_login_failed", after=after)


async def complete_login(
    session: AsyncSession,
    store: SessionStore,
    settings: Settings,
    context: AuditContext,
    key: str,
    *,
    code: str | None,
    state: str | None,
    provider_error: str | None,
    device: str | None,
) -> LoginOutcome:
    provider = _provider(settings, key)
    try:
        if not state:
            raise SsoRefusedError("invalid_state", "The sign-in is unknown, used or expired")
        stored = await _take_state(store, key, state)
        if provider_error or not code:
            # The person cancelled, or the provider refused them: the state is used up all the same.
            raise SsoRefusedError("provider_error", "The identity provider did not sign you in")
        return await _complete(
            session, store, settings, context, key, provider, stored, code=code, device=device
        )
    except SsoRefusedError as exc:
        if not exc.audited:
            await _audit_failure(session, context, key, exc.reason)
        raise


async def _complete(
    session: AsyncSession,
    store: SessionStore,
    settings: Settings,
    context: AuditContext,
    key: str,
    provider: OidcProvider,
    stored: dict[str, Any],
    *,
    code: str,
    device: str | None,
) -> LoginOutcome:
    async with _http_client(settings) as client:
        metadata = await _discover(client, provider)
        tokens = await _exchange_code(
            client, settings, key, provider, metadata, code=code, verifier=str(stored["verifier"])
        )
        claims = await _validate_id_token(
            client, provider, metadata, tokens, nonce=str(stored["nonce"])
        )
    email_claim = claims.get("email")
    if not isinstance(email_claim, str) or "@" not in email_claim:
        raise SsoRefusedError("no_email", "The identity provider did not give an email address")
    email = normalize_email(email_claim)
    if claims.get("email_verified") is not True:
        await _audit_failure(session, context, key, "email_not_verified", email=email)
        raise SsoRefusedError(
            "email_not_verified", "The email address is not verified", audited=True
        )
    domain = email.rsplit("@", 1)[1]
    if provider.allowed_email_domains and domain not in provider.allowed_email_domains:
        await _audit_failure(session, context, key, "domain_not_allowed", email=email)
        raise SsoRefusedError(
            "domain_not_allowed", "This email domain is not allowed", audited=True
        )

    user = await session.scalar(select(User).where(User.email == email))
    if user is None:
        if not provider.create_accounts:
            await _audit_failure(session, context, key, "no_account", email=email)
            raise SsoRefusedError("no_account", "No account has this email address", audited=True)
        user = await _create_account(session, context, key, provider, email, claims)
    elif user.kind != UserKind.PERSON or user.status != UserStatus.ACTIVE:
        reason = "account_disabled" if user.kind == UserKind.PERSON else "service_account"
        await _audit_failure(session, context, key, reason, user_id=user.id, email=email)
        raise SsoRefusedError(reason, "This account cannot sign in", audited=True)
    # The provider authenticated the person, with its own second factor if it has one: the
    # account's TOTP is for password sign-ins.
    login_tokens = await open_login_session(
        session, settings, context, user, device, method=f"sso:{key}"
    )
    return LoginOutcome(user=user, tokens=login_tokens)


async def _create_account(
    session: AsyncSession,
    context: AuditContext,
    key: str,
    provider: OidcProvider,
    email: str,
    claims: CodeIDToken,
) -> User:
    name_claim = claims.get("name")
    name = name_claim.strip()[:200] if isinstance(name_claim, str) and name_claim.strip() else ""
    user = User(
        id=uuid.uuid4(),
        email=email,
        name=name or email.split("@", 1)[0],
        role=UserRole(provider.default_role),
        status=UserStatus.ACTIVE,
        kind=UserKind.PERSON,
        password_hash=None,
        must_change_password=False,
    )
    session.add(user)
    await session.flush()
    await record_about(
        session,
        context.as_actor(ActorType.USER, str(user.id)),
        AuditSubject.account(user.id),
        "user.create",
        after={**user_snapshot(user), "method": f"sso:{key}", "sso_only": True},
    )
    return user
