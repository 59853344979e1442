"""Staff authentication: logins, tokens, login sessions, lockout and two-factor.

A login session (`user_sessions` row) is the family of one login's tokens; its id is the `sid`
claim. Revoking it ends its access and refresh tokens at once. The session store caches each
login session's state for the per-request check (`principal:{sid}`); the database stays the
source of truth and every revocation deletes the cached entry.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyotp
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import object_session

from app.config import Settings
from app.core.clock import utcnow
from app.core.errors import (
    ForbiddenError,
    LockedError,
    TooManyRequestsError,
    UnauthorizedError,
    ValidationFailedError,
)
from app.core.logging import get_logger
from app.core.security import (
    FieldEncryptor,
    InvalidTokenError,
    TokenType,
    create_token,
    decode_token,
    hash_password,
    hash_secret,
    verify_password,
)
from app.models.audit import ActorType, AuditCategory
from app.models.user import User, UserKind, UserSession, UserStatus
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.passwords import check_password_policy
from app.services.principals import StaffPrincipal, UserProfile
from app.services.session_store import (
    SessionStore,
    SessionStoreUnavailableError,
    throttle_count,
)

logger = get_logger(__name__)

MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
IP_FAILURE_LIMIT = 20
IP_FAILURE_WINDOW = timedelta(minutes=15)
REFRESH_GRACE = timedelta(seconds=30)
MFA_TOKEN_LIFETIME = timedelta(minutes=5)
LAST_SEEN_WRITE_INTERVAL = timedelta(seconds=60)
PRINCIPAL_CACHE_SECONDS = 60.0
TOTP_ISSUER = "Metricis"
INVALID_CREDENTIALS = "Invalid email or password"


def normalize_email(email: str) -> str:
    return email.strip().lower()


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    user: User
    tokens: TokenPair | None = None
    mfa_token: str | None = None


def _principal_key(session_id: uuid.UUID) -> str:
    return f"principal:{session_id}"


def _grace_key(refresh_jti: str) -> str:
    return f"refresh-grace:{refresh_jti}"


def issue_tokens(settings: Settings, user: User, login: UserSession) -> TokenPair:
    access = create_token(
        settings,
        subject=str(user.id),
        token_type=TokenType.ACCESS,
        lifetime=timedelta(minutes=settings.ACCESS_TOKEN_EXPIRE_MINUTES),
        session_id=login.id,
    )
    refresh = create_token(
        settings,
        subject=str(user.id),
        token_type=TokenType.REFRESH,
        lifetime=login.expires_at - utcnow(),
        session_id=login.id,
    )
    login.refresh_jti = refresh.jti
    return TokenPair(
        access_token=access.token,
        refresh_token=refresh.token,
        expires_in=settings.ACCESS_TOKEN_EXPIRE_MINUTES * 60,
    )


async def forget_cached_principals(store: SessionStore, session_ids: list[uuid.UUID]) -> None:
    for session_id in session_ids:
        try:
            await store.delete(_principal_key(session_id))
        except SessionStoreUnavailableError:
            # The cache entry expires within PRINCIPAL_CACHE_SECONDS; the database already says no.
            logger.warning("session_store_unavailable", operation="forget_principal")


async def revoke_login_sessions(
    session: AsyncSession,
    store: SessionStore,
    *,
    user_id: uuid.UUID,
    reason: str,
    only: uuid.UUID | None = None,
    keep: uuid.UUID | None = None,
) -> list[uuid.UUID]:
    """Revoke a user's active login sessions (one, all, or all but one); returns their ids."""
    query = select(UserSession.id).where(
        UserSession.user_id == user_id, UserSession.revoked_at.is_(None)
    )
    if only is not None:
        query = query.where(UserSession.id == only)
    if keep is not None:
        query = query.where(UserSession.id != keep)
    ids = list((await session.scalars(query)).all())
    if ids:
        await session.execute(
            update(UserSession)
            .where(UserSession.id.in_(ids))
            .values(revoked_at=utcnow(), revoked_reason=reason)
        )
        await forget_cached_principals(store, ids)
    return ids


async def end_login_session(
    session: AsyncSession,
    store: SessionStore,
    context: AuditContext,
    login_session_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    reason: str,
    action: str,
    after: dict[str, Any] | None = None,
) -> None:
    """Revoke one login session of the user and record why, as one event about it."""
    await revoke_login_sessions(
        session, store, user_id=user_id, reason=reason, only=login_session_id
    )
    await record_about(
        session, context, AuditSubject.login_session(login_session_id), action, after=after
    )


async def _ip_failures(store: SessionStore, ip: str | None, *, add: bool) -> int:
    if not ip:
        return 0
    return await throttle_count(store, f"login-fail-ip:{ip}", IP_FAILURE_WINDOW, add=add)


async def _unknown_account_failures(
    store: SessionStore, settings: Settings, email: str, *, add: bool
) -> int:
    # Keyed by a keyed hash: the store never holds the addresses people typed.
    key = "login-fail-email:" + hash_secret(settings, "login-fail-email:" + email)
    return await throttle_count(store, key, LOCKOUT, add=add)


def _locked_error(retry_after: timedelta) -> LockedError:
    seconds = max(1, int(retry_after.total_seconds()))
    return LockedError(
        "Too many failed sign-in attempts; the account is locked for a while",
        details={"retry_after_seconds": seconds},
        headers={"Retry-After": str(seconds)},
        keep_changes=True,
    )


async def login(
    session: AsyncSession,
    store: SessionStore,
    settings: Settings,
    context: AuditContext,
    *,
    email: str,
    password: str,
    device: str | None,
) -> LoginOutcome:
    email = normalize_email(email)
    if await _ip_failures(store, context.ip, add=False) >= IP_FAILURE_LIMIT:
        raise TooManyRequestsError(
            "Too many failed sign-in attempts from this address",
            details={"retry_after_seconds": int(IP_FAILURE_WINDOW.total_seconds())},
            headers={"Retry-After": str(int(IP_FAILURE_WINDOW.total_seconds()))},
        )
    user = await session.scalar(select(User).where(User.email == email))
    now = utcnow()

    if user is None:
        await verify_password(password, None)  # same cost as a real check
        failures = await _unknown_account_failures(store, settings, email, add=False)
        if failures >= MAX_FAILED_LOGINS:
            raise _locked_error(LOCKOUT)
        await _ip_failures(store, context.ip, add=True)
        failures = await _unknown_account_failures(store, settings, email, add=True)
        await record_about(
            session,
            context,
            AuditSubject(AuditCategory.AUTH),
            "user.login_failed",
            after={"email": email, "reason": "invalid_credentials"},
        )
        if failures >= MAX_FAILED_LOGINS:
            raise _locked_error(LOCKOUT)
        raise UnauthorizedError(INVALID_CREDENTIALS, keep_changes=True)

    if user.locked_until is not None and user.locked_until > now:
        await verify_password(password, None)
        raise _locked_error(user.locked_until - now)

    if user.password_hash is None:
        # Single sign-on only, or a service account: no password can open it.
        await verify_password(password, None)
        service = user.kind == UserKind.SERVICE
        await record_about(
            session,
            context,
            AuditSubject.account(user.id),
            "user.login_failed",
            after={"email": user.email, "reason": "service_account" if service else "sso_only"},
        )
        if service:
            raise UnauthorizedError(
                "Service accounts do not sign in; they use personal access tokens",
                details={"reason": "SERVICE_ACCOUNT"},
                keep_changes=True,
            )
        raise UnauthorizedError(
            "This account signs in through single sign-on, not with a password",
            details={"reason": "SSO_ONLY"},
            keep_changes=True,
        )

    valid, new_hash = await verify_password(password, user.password_hash)
    if not valid or user.status != UserStatus.ACTIVE:
        reason = "invalid_credentials" if not valid else "account_disabled"
        if await _count_failed_sign_in(
            session, store, context, user, reason=reason, counted=not valid
        ):
            raise _locked_error(LOCKOUT)
        raise UnauthorizedError(INVALID_CREDENTIALS, keep_changes=True)

    if new_hash is not None:
        user.password_hash = new_hash

    if user.totp_enabled:
        # The failure count is cleared only once the second factor is right too.
        mfa = create_token(
            settings,
            subject=str(user.id),
            token_type=TokenType.MFA,
            lifetime=MFA_TOKEN_LIFETIME,
            extra_claims={"dev": (device or "")[:255]},
        )
        return LoginOutcome(user=user, mfa_token=mfa.token)

    tokens = await open_login_session(session, settings, context, user, device, method="password")
    return LoginOutcome(user=user, tokens=tokens)


async def _count_failed_sign_in(
    session: AsyncSession,
    store: SessionStore,
    context: AuditContext,
    user: User,
    *,
    reason: str,
    counted: bool = True,
) -> bool:
    """Count and audit a failed sign-in (a wrong password or two-factor code); True: now locked."""
    now = utcnow()
    await _ip_failures(store, context.ip, add=True)
    if counted:
        user.failed_login_count += 1
        user.last_failed_login_at = now
    locked = user.failed_login_count >= MAX_FAILED_LOGINS
    if locked:
        user.locked_until = now + LOCKOUT
        user.failed_login_count = 0
    await record_about(
        session,
        context,
        AuditSubject.account(user.id),
        "user.login_failed",
        after={"email": user.email, "reason": reason, "locked": locked},
    )
    return locked


async def open_login_session(
    session: AsyncSession,
    settings: Settings,
    context: AuditContext,
    user: User,
    device: str | None,
    *,
    method: str,
) -> TokenPair:
    now = utcnow()
    login_session = UserSession(
        id=uuid.uuid4(),
        user_id=user.id,
        device=(device or None) and device[:255],
        ip=context.ip,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(days=settings.REFRESH_TOKEN_EXPIRE_DAYS),
        refresh_jti="",
    )
    tokens = issue_tokens(settings, user, login_session)
    session.add(login_session)
    user.last_login_at = now
    user.failed_login_count = 0
    user.locked_until = None
    await record_about(
        session,
        context.as_actor(ActorType.USER, str(user.id)),
        AuditSubject.login_session(login_session.id),
        "user.login",
        after={"method": method, "device": login_session.device},
    )
    return tokens


async def complete_mfa_login(
    session: AsyncSession,
    store: SessionStore,
    settings: Settings,
    context: AuditContext,
    encryptor: FieldEncryptor,
    *,
    mfa_token: str,
    code: str,
) -> LoginOutcome:
    try:
        claims = decode_token(settings, mfa_token, TokenType.MFA)
        user_id = uuid.UUID(claims["sub"])
    except (InvalidTokenError, ValueError) as exc:
        raise UnauthorizedError("The two-factor challenge is invalid or has expired") from exc
    # One use per challenge: a replayed mfa_token is refused.
    if not await _first_use(store, f"mfa-used:{claims['jti']}", MFA_TOKEN_LIFETIME):
        raise UnauthorizedError("The two-factor challenge has already been used")
    user = await session.get(User, user_id)
    if user is None or user.status != UserStatus.ACTIVE or not user.totp_enabled:
        raise UnauthorizedError("The two-factor challenge is invalid or has expired")
    now = utcnow()
    if user.locked_until is not None and user.locked_until > now:
        raise _locked_error(user.locked_until - now)
    if not await _verify_totp(store, encryptor, user, code):
        # Counted with wrong passwords: the password alone must not buy unlimited code guesses.
        if await _count_failed_sign_in(
            session, store, context, user, reason="invalid_two_factor_code"
        ):
            raise _locked_error(LOCKOUT)
        raise UnauthorizedError("The two-factor code is not valid", keep_changes=True)
    device = claims.get("dev") or None
    tokens = await open_login_session(
        session, settings, context, user, device, method="password+totp"
    )
    return LoginOutcome(user=user, tokens=tokens)


async def _first_use(store: SessionStore, key: str, lifetime: timedelta) -> bool:
    try:
        return await store.set_if_absent(key, {"used": True}, lifetime.total_seconds())
    except SessionStoreUnavailableError:
        logger.warning("session_store_unavailable", operation="single_use_check")
        return True


async def _verify_totp(
    store: SessionStore, encryptor: FieldEncryptor, user: User, code: str
) -> bool:
    if not user.totp_secret_encrypted:
        return False
    totp = pyotp.TOTP(encryptor.decrypt(user.totp_secret_encrypted))
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and totp.verify(code, valid_window=1)):
        return False
    # A code is accepted once: an observed code cannot be replayed within its window.
    return await _first_use(store, f"totp-used:{user.id}:{code}", timedelta(seconds=120))


def _decode_login_token(
    settings: Settings, token: str, token_type: TokenType
) -> tuple[dict[str, Any], uuid.UUID, uuid.UUID]:
    """A staff token's claims, its login session's id and its user's id; one 401 for any fault."""
    try:
        claims = decode_token(settings, token, token_type)
        return claims, uuid.UUID(str(claims.get("sid"))), uuid.UUID(claims["sub"])
    except (InvalidTokenError, ValueError) as exc:
        raise UnauthorizedError(f"The {token_type} token is invalid or has expired") from exc


async def refresh_tokens(
    session: AsyncSession,
    store: SessionStore,
    settings: Settings,
    context: AuditContext,
    *,
    refresh_token: str,
) -> TokenPair:
    claims, session_id, user_id = _decode_login_token(settings, refresh_token, TokenType.REFRESH)
    jti = str(claims["jti"])
    login_session = await session.get(UserSession, session_id, with_for_update=True)
    if login_session is None or login_session.user_id != user_id:
        raise UnauthorizedError("The refresh token is invalid or has expired")
    user = await session.get(User, user_id)
    now = utcnow()
    if login_session.revoked_at is not None or user is None or user.status != UserStatus.ACTIVE:
        raise UnauthorizedError("The login session has ended")
    if _idle_expired(settings, login_session, now):
        await _end_idle(session, store, context, login_session)

    if jti == login_session.refresh_jti:
        login_session.previous_refresh_jti = jti
        login_session.rotated_at = now
        login_session.last_seen_at = now
        tokens = issue_tokens(settings, user, login_session)
        await _remember_for_grace(store, jti, tokens)
        await forget_cached_principals(store, [login_session.id])
        return tokens

    if (
        jti == login_session.previous_refresh_jti
        and login_session.rotated_at is not None
        and now - login_session.rotated_at <= REFRESH_GRACE
    ):
        replay = await _grace_pair(store, jti)
        if replay is not None:
            return replay

    # A used refresh token came back: someone holds a copy. End the whole family.
    await end_login_session(
        session,
        store,
        context.as_actor(ActorType.USER, str(user.id)),
        login_session.id,
        user.id,
        reason="refresh_reuse",
        action="user.refresh_reuse_revoked",
        after={"revoked_reason": "refresh_reuse"},
    )
    raise UnauthorizedError(
        "This refresh token was already used; the login session has been revoked",
        keep_changes=True,
    )


async def _remember_for_grace(store: SessionStore, jti: str, tokens: TokenPair) -> None:
    try:
        await store.set(
            _grace_key(jti),
            {
                "access_token": tokens.access_token,
                "refresh_token": tokens.refresh_token,
                "expires_in": tokens.expires_in,
            },
            REFRESH_GRACE.total_seconds(),
        )
    except SessionStoreUnavailableError:
        logger.warning("session_store_unavailable", operation="refresh_grace")


async def _grace_pair(store: SessionStore, jti: str) -> TokenPair | None:
    try:
        cached = await store.get(_grace_key(jti))
    except SessionStoreUnavailableError:
        return None
    if cached is None:
        return None
    return TokenPair(
        access_token=str(cached["access_token"]),
        refresh_token=str(cached["refresh_token"]),
        expires_in=int(cached["expires_in"]),
    )


def _idle_expired(settings: Settings, login_session: UserSession, now: datetime) -> bool:
    idle_limit = timedelta(minutes=settings.SESSION_IDLE_TIMEOUT_MINUTES)
    return now - login_session.last_seen_at > idle_limit or now >= login_session.expires_at


async def _end_idle(
    session: AsyncSession, store: SessionStore, context: AuditContext, login_session: UserSession
) -> None:
    await end_login_session(
        session,
        store,
        context.as_actor(ActorType.SYSTEM, "system"),
        login_session.id,
        login_session.user_id,
        reason="idle_timeout",
        action="user.session_expired",
        after={"revoked_reason": "idle_timeout"},
    )
    raise UnauthorizedError("The login session expired after inactivity", keep_changes=True)


async def authenticate_access_token(
    session: AsyncSession,
    store: SessionStore,
    settings: Settings,
    context: AuditContext,
    token: str,
) -> StaffPrincipal:
    """Check an access token and its login session; every failure is the same 401."""
    claims, _, _ = _decode_login_token(settings, token, TokenType.ACCESS)
    return await authenticate_access_claims(session, store, settings, context, claims)


async def authenticate_access_claims(
    session: AsyncSession,
    store: SessionStore,
    settings: Settings,
    context: AuditContext,
    claims: dict[str, Any],
) -> StaffPrincipal:
    """As `authenticate_access_token`, for the claims of a token already verified as a staff
    access token (decoded once per request)."""
    try:
        session_id, user_id = uuid.UUID(str(claims.get("sid"))), uuid.UUID(str(claims["sub"]))
    except (KeyError, ValueError) as exc:
        raise UnauthorizedError("The access token is invalid or has expired") from exc

    now = utcnow()
    cached, user_version = await _cached_principal(store, session_id, user_id)
    profile = cached.get("profile") if cached is not None else None
    if (
        cached is not None
        and isinstance(profile, dict)
        and profile.get("id") == str(user_id)
        and cached.get("user_version") == user_version
    ):
        last_seen = datetime.fromisoformat(str(cached["last_seen_at"]))
        idle_limit = timedelta(minutes=settings.SESSION_IDLE_TIMEOUT_MINUTES)
        if now - last_seen <= idle_limit and now - last_seen < LAST_SEEN_WRITE_INTERVAL:
            return StaffPrincipal.of_login(UserProfile.model_validate(profile), session_id)

    row = (
        await session.execute(
            select(UserSession, User)
            .join(User, User.id == UserSession.user_id)
            .where(UserSession.id == session_id)
        )
    ).one_or_none()
    if row is None:
        raise UnauthorizedError("The access token is invalid or has expired")
    login_session, user = row
    if (
        login_session.user_id != user_id
        or login_session.revoked_at is not None
        or user.status != UserStatus.ACTIVE
    ):
        raise UnauthorizedError("The login session has ended")
    if _idle_expired(settings, login_session, now):
        await _end_idle(session, store, context, login_session)
    if now - login_session.last_seen_at >= LAST_SEEN_WRITE_INTERVAL:
        login_session.last_seen_at = now
    principal = StaffPrincipal.of_login(UserProfile.model_validate(user), login_session.id)
    await _cache_principal(store, principal, login_session.last_seen_at, user_version)
    return principal


# The principal cache holds the account's details too (`GET /api/auth/me` answers from it), so
# an entry must not outlive a change to the account. Every committed change to a `users` row
# gives the account a new version mark (`user-version:{id}`, a random value: never one seen
# before); an entry remembers the mark it was read under and is used only while the mark is
# unchanged. Mark and entry are read in one round trip.
USER_VERSION_SECONDS = 24 * 3600.0
_CHANGED_USERS_KEY = "metricis_changed_users"


def _user_version_key(user_id: uuid.UUID) -> str:
    return f"user-version:{user_id}"


@event.listens_for(User, "after_update")
@event.listens_for(User, "after_delete")
def _note_changed_user(_mapper: Any, _connection: Any, user: User) -> None:
    session = object_session(user)
    if session is not None:
        session.info.setdefault(_CHANGED_USERS_KEY, set()).add(user.id)


async def mark_changed_users(session: AsyncSession, store: SessionStore) -> None:
    """After the transaction of `session`: new version marks for the accounts it changed, so
    cached principals read before the change are read again from the database. Also after a
    rollback (a mark too many costs one query); when the store is unreachable the entries
    expire within PRINCIPAL_CACHE_SECONDS."""
    changed: set[uuid.UUID] = session.info.pop(_CHANGED_USERS_KEY, set())
    for user_id in changed:
        try:
            await store.set(
                _user_version_key(user_id), {"mark": uuid.uuid4().hex}, USER_VERSION_SECONDS
            )
        except SessionStoreUnavailableError:
            logger.warning("session_store_unavailable", operation="mark_changed_user")


async def _cached_principal(
    store: SessionStore, session_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[dict[str, Any] | None, str | None]:
    """The cached entry of a login session (None when missing or unreadable) and the account's
    current version mark (None when it has none)."""
    try:
        entry, version = await store.get_many(
            [_principal_key(session_id), _user_version_key(user_id)]
        )
    except SessionStoreUnavailableError:
        return None, None
    mark = None if version is None else version.get("mark")
    return entry, mark if isinstance(mark, str) else None


async def _cache_principal(
    store: SessionStore,
    principal: StaffPrincipal,
    last_seen_at: datetime,
    user_version: str | None,
) -> None:
    assert principal.profile is not None
    try:
        await store.set(
            _principal_key(principal.session_id),
            {
                "profile": principal.profile.model_dump(mode="json"),
                "last_seen_at": last_seen_at.isoformat(),
                "user_version": user_version,
            },
            PRINCIPAL_CACHE_SECONDS,
        )
    except SessionStoreUnavailableError:
        logger.warning("session_store_unavailable", operation="cache_principal")


async def logout(
    session: AsyncSession, store: SessionStore, context: AuditContext, principal: StaffPrincipal
) -> None:
    await end_login_session(
        session,
        store,
        context,
        principal.session_id,
        principal.user_id,
        reason="logout",
        action="user.logout",
    )


async def change_password(
    session: AsyncSession,
    store: SessionStore,
    context: AuditContext,
    principal: StaffPrincipal,
    *,
    current_password: str,
    new_password: str,
) -> None:
    user = await _reauthenticated_user(
        session, principal, current_password, field="current_password"
    )
    check_password_policy(
        new_password,
        email=user.email,
        name=user.name,
        current_password=current_password,
        field="new_password",
    )
    user.password_hash = await hash_password(new_password)
    user.password_version += 1
    user.must_change_password = False
    # Other devices signed in with the old password are signed out.
    revoked = await revoke_login_sessions(
        session, store, user_id=user.id, reason="password_changed", keep=principal.session_id
    )
    await forget_cached_principals(store, [principal.session_id])
    await record_about(
        session,
        context,
        AuditSubject.account(user.id),
        "user.password_changed",
        after={"other_sessions_revoked": len(revoked)},
    )


async def accept_terms(
    session: AsyncSession, context: AuditContext, principal: StaffPrincipal
) -> User:
    user = await _load_user(session, principal.user_id)
    if user.terms_accepted_at is None:
        user.terms_accepted_at = utcnow()
        await record_about(session, context, AuditSubject.account(user.id), "user.terms_accepted")
    return user


async def _reauthenticated_user(
    session: AsyncSession, principal: StaffPrincipal, password: str, *, field: str
) -> User:
    """Re-authentication for sensitive changes: 403 naming the field when the password is wrong."""
    user = await _load_user(session, principal.user_id)
    valid, _ = await verify_password(password, user.password_hash)
    if not valid:
        raise ForbiddenError(
            "The password is not correct",
            details={"errors": [{"field": field, "message": "incorrect"}]},
        )
    return user


async def _user_without_totp(session: AsyncSession, principal: StaffPrincipal) -> User:
    """The caller's account, about to set up two-factor: 422 when it is already enabled."""
    user = await _load_user(session, principal.user_id)
    if user.totp_enabled:
        raise ValidationFailedError("Two-factor authentication is already enabled")
    return user


async def _load_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise UnauthorizedError("The login session has ended")
    return user


@dataclass(frozen=True, slots=True)
class TotpSetup:
    secret: str
    otpauth_uri: str


async def setup_totp(
    session: AsyncSession,
    encryptor: FieldEncryptor,
    context: AuditContext,
    principal: StaffPrincipal,
) -> TotpSetup:
    user = await _user_without_totp(session, principal)
    secret = pyotp.random_base32()
    user.totp_secret_encrypted = encryptor.encrypt(secret)
    await record_about(session, context, AuditSubject.account(user.id), "user.2fa_setup_started")
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=TOTP_ISSUER)
    return TotpSetup(secret=secret, otpauth_uri=uri)


async def enable_totp(
    session: AsyncSession,
    store: SessionStore,
    encryptor: FieldEncryptor,
    context: AuditContext,
    principal: StaffPrincipal,
    *,
    code: str,
) -> None:
    user = await _user_without_totp(session, principal)
    if not user.totp_secret_encrypted:
        raise ValidationFailedError("Start with POST /api/auth/2fa/setup")
    if not await _verify_totp(store, encryptor, user, code):
        raise ValidationFailedError(
            "The two-factor code is not valid",
            details={"errors": [{"field": "code", "message": "invalid code"}]},
        )
    user.totp_enabled = True
    await record_about(session, context, AuditSubject.account(user.id), "user.2fa_enabled")


async def disable_totp(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    *,
    password: str,
) -> None:
    user = await _reauthenticated_user(session, principal, password, field="password")
    if not user.totp_enabled and not user.totp_secret_encrypted:
        raise ValidationFailedError("Two-factor authentication is not enabled")
    user.totp_enabled = False
    user.totp_secret_encrypted = None
    await record_about(session, context, AuditSubject.account(user.id), "user.2fa_disabled")
