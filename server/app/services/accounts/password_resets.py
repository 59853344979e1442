"""Password reset by an emailed, single-use link (docs/accounts.md, password reset).

Requesting a reset never tells whether the address has an account: the HTTP layer answers 202
before any of this runs, and the lookup, the throttles and the email happen afterwards, so the
answer and its timing are the same either way. Only the keyed hash of a link's token is stored;
a link works once, for PASSWORD_RESET_EXPIRE_MINUTES. Setting the new password ends every login
session of the account, kills its other outstanding reset links and clears its lockout.

Throttles (session store, shared across API processes with Redis): 3 requests per address per
15 minutes and 20 per client address per 15 minutes; requests over either are dropped silently
(still 202). Failed confirmations count per client address: 20 in 15 minutes answer 429.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlencode

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.core.errors import TooManyRequestsError, UnauthorizedError
from app.core.logging import get_logger
from app.core.security import generate_secret_token, hash_password, hash_secret
from app.models.audit import ActorType, AuditCategory
from app.models.user import PasswordReset, User, UserSession, UserStatus
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.auth import end_login_session, normalize_email
from app.services.passwords import check_password_policy
from app.services.session_store import SessionStore, throttle_count

logger = get_logger(__name__)

RESET_PATH = "/staff/reset-password"
EMAIL_SUBJECT = "Reset your Metricis password"
EMAIL_REQUEST_LIMIT = 3
EMAIL_REQUEST_WINDOW = timedelta(minutes=15)
IP_REQUEST_LIMIT = 20
IP_REQUEST_WINDOW = timedelta(minutes=15)
CONFIRM_IP_FAILURE_LIMIT = 20
CONFIRM_IP_FAILURE_WINDOW = timedelta(minutes=15)
MAX_EMAIL_LENGTH = 320
INVALID_LINK = "The reset link is invalid, has expired or has already been used"


@dataclass(frozen=True, slots=True)
class ResetEmail:
    """One email to send. Not printable: its text holds a live reset token."""

    to: str = field(repr=False)
    subject: str
    text: str = field(repr=False)


def hash_reset_token(settings: Settings, token: str) -> str:
    return hash_secret(settings, "password-reset:" + token)


def reset_url(settings: Settings, token: str) -> str:
    return settings.PUBLIC_BASE_URL.rstrip("/") + RESET_PATH + "?" + urlencode({"token": token})


def _email_text(settings: Settings, url: str) -> str:
    minutes = settings.PASSWORD_RESET_EXPIRE_MINUTES
    return (
        "Hello,\n\n"
        "Someone asked to reset the password of your Metricis account. Open this link to choose"
        f" a new password. It works once and expires in {minutes} minutes:\n\n"
        f"{url}\n\n"
        "Choosing a new password signs you out everywhere. If you did not ask for this, ignore"
        " this email: your password stays as it is.\n"
    )


async def request_password_reset(
    session: AsyncSession,
    store: SessionStore,
    settings: Settings,
    context: AuditContext,
    *,
    email: str,
) -> ResetEmail | None:
    """A reset link for the active account with this address, or None (unknown, throttled).

    Does not commit: the caller commits before sending, so no link is mailed that the database
    does not hold.
    """
    address = normalize_email(email)
    if not address or len(address) > MAX_EMAIL_LENGTH:
        return None
    if context.ip and (
        await throttle_count(store, f"password-reset-ip:{context.ip}", IP_REQUEST_WINDOW, add=True)
        > IP_REQUEST_LIMIT
    ):
        logger.warning("password_reset_throttled", scope="ip")
        return None
    # Keyed by a keyed hash: the store never holds the addresses people typed.
    email_key = "password-reset-email:" + hash_secret(settings, "password-reset-email:" + address)
    if await throttle_count(store, email_key, EMAIL_REQUEST_WINDOW, add=True) > EMAIL_REQUEST_LIMIT:
        logger.warning("password_reset_throttled", scope="email")
        return None
    user = await session.scalar(select(User).where(User.email == address))
    # Accounts without a password (single sign-on only, service accounts) get no link: a reset
    # would give them a password their identity provider does not know of.
    if user is None or user.status != UserStatus.ACTIVE or user.password_hash is None:
        return None
    now = utcnow()
    token = generate_secret_token()
    reset = PasswordReset(
        id=uuid.uuid4(),
        user_id=user.id,
        token_hash=hash_reset_token(settings, token),
        created_at=now,
        expires_at=now + timedelta(minutes=settings.PASSWORD_RESET_EXPIRE_MINUTES),
    )
    session.add(reset)
    await record_about(
        session,
        context,
        AuditSubject.account(user.id),
        "user.password_reset_requested",
        after={"reset_id": str(reset.id), "expires_at": reset.expires_at.isoformat()},
    )
    return ResetEmail(
        to=user.email, subject=EMAIL_SUBJECT, text=_email_text(settings, reset_url(settings, token))
    )


async def reset_password(
    session: AsyncSession,
    store: SessionStore,
    settings: Settings,
    context: AuditContext,
    *,
    token: str,
    password: str,
) -> None:
    """Set a new password with a reset link's token, once; every refusal of the link is one 401."""
    ip_key = f"password-reset-fail-ip:{context.ip}"
    if (
        context.ip
        and await throttle_count(store, ip_key, CONFIRM_IP_FAILURE_WINDOW)
        >= CONFIRM_IP_FAILURE_LIMIT
    ):
        seconds = int(CONFIRM_IP_FAILURE_WINDOW.total_seconds())
        raise TooManyRequestsError(
            "Too many invalid reset links from this address",
            details={"retry_after_seconds": seconds},
            headers={"Retry-After": str(seconds)},
        )
    now = utcnow()
    token_hash = hash_reset_token(settings, token.strip())
    reset = await session.scalar(
        select(PasswordReset).where(PasswordReset.token_hash == token_hash)
    )
    user = await session.get(User, reset.user_id) if reset is not None else None
    if (
        reset is None
        or user is None
        or reset.used_at is not None
        or reset.expires_at <= now
        or user.status != UserStatus.ACTIVE
    ):
        if context.ip:
            await throttle_count(store, ip_key, CONFIRM_IP_FAILURE_WINDOW, add=True)
        await record_about(
            session,
            context,
            AuditSubject.account(user.id) if user is not None else AuditSubject(AuditCategory.AUTH),
            "user.password_reset_failed",
            after={"reason": _refusal_reason(reset, user)},
        )
        raise UnauthorizedError(INVALID_LINK, keep_changes=True)
    # The policy first: a refused password does not use the link up.
    check_password_policy(password, email=user.email, name=user.name, field="password")
    # One statement checks and consumes the link, so two concurrent uses cannot both succeed.
    consumed = (
        await session.execute(
            update(PasswordReset)
            .where(PasswordReset.id == reset.id, PasswordReset.used_at.is_(None))
            .values(used_at=now)
            .returning(PasswordReset.id)
            .execution_options(synchronize_session=False)
        )
    ).one_or_none()
    if consumed is None:
        raise UnauthorizedError(INVALID_LINK)
    # The account's other links die with this one.
    await session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    user.password_hash = await hash_password(password)
    user.password_version += 1
    user.must_change_password = False
    user.failed_login_count = 0
    user.locked_until = None
    as_user = context.as_actor(ActorType.USER, str(user.id))
    active = (
        await session.scalars(
            select(UserSession.id).where(
                UserSession.user_id == user.id, UserSession.revoked_at.is_(None)
            )
        )
    ).all()
    for login_session_id in active:
        await end_login_session(
            session,
            store,
            as_user,
            login_session_id,
            user.id,
            reason="password_reset",
            action="user.session_revoked",
            after={"revoked_reason": "password_reset"},
        )
    await record_about(
        session,
        as_user,
        AuditSubject.account(user.id),
        "user.password_reset",
        after={"reset_id": str(reset.id), "sessions_ended": len(active)},
    )


def _refusal_reason(reset: PasswordReset | None, user: User | None) -> str:
    """Why a link was refused: recorded in the audit trail, never told to the caller."""
    if reset is None or user is None:
        return "unknown"
    if reset.used_at is not None:
        return "already_used"
    if user.status != UserStatus.ACTIVE:
        return "account_disabled"
    return "expired"
