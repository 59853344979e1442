"""Participant sign-in by an emailed one-time link (docs/participants-import-and-links.md).

Requesting a link never tells whether the address is known: the HTTP layer answers 202 before any
of this runs, and the lookup, the throttles and the email happen afterwards. Participants are
found by the blind index of their email; each non-withdrawn match gets its own link. Only the
keyed hash of a link's token is stored; a link works once, for MAGIC_LINK_EXPIRE_MINUTES.

Throttles (session store, so they hold across API processes with Redis): 3 link requests per
address per 15 minutes and 20 per client IP per 15 minutes; requests over either are dropped
silently (still 202). Failed verifications count per IP like failed access codes: 20 in 15
minutes answer 429.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlencode

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.core.errors import TooManyRequestsError, UnauthorizedError
from app.core.logging import get_logger
from app.core.security import FieldEncryptor, generate_secret_token, hash_secret
from app.models.audit import ActorType, AuditCategory
from app.models.participant import MagicLinkToken, Participant, ParticipantStatus
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.participant_auth import (
    ParticipantTokens,
    open_participant_login,
    record_failed_sign_in,
)
from app.services.participants import email_index
from app.services.session_store import SessionStore, throttle_count

logger = get_logger(__name__)

SIGN_IN_PATH = "/participant/sign-in"
EMAIL_REQUEST_LIMIT = 3
EMAIL_REQUEST_WINDOW = timedelta(minutes=15)
IP_REQUEST_LIMIT = 20
IP_REQUEST_WINDOW = timedelta(minutes=15)
VERIFY_IP_FAILURE_LIMIT = 20
VERIFY_IP_FAILURE_WINDOW = timedelta(minutes=15)
MAX_EMAIL_LENGTH = 320
INVALID_LINK = "The sign-in link is invalid, has expired or has already been used"
EMAIL_SUBJECT = "Your Metricis sign-in link"


@dataclass(frozen=True, slots=True)
class MagicLinkEmail:
    """One email to send. Not printable: its text holds a live sign-in token."""

    to: str = field(repr=False)
    subject: str
    text: str = field(repr=False)


def hash_link_token(settings: Settings, token: str) -> str:
    return hash_secret(settings, "magic-link:" + token)


def sign_in_url(settings: Settings, token: str) -> str:
    return settings.PUBLIC_BASE_URL.rstrip("/") + SIGN_IN_PATH + "?" + urlencode({"token": token})


def _email_text(settings: Settings, url: str, token: str) -> str:
    # Deliberately no study name: mail crosses servers in clear, and taking part in a clinical
    # study is health information.
    minutes = settings.MAGIC_LINK_EXPIRE_MINUTES
    return (
        "Hello,\n\n"
        f"Use this link to sign in to Metricis. It works once and expires in {minutes} minutes:\n\n"
        f"{url}\n\n"
        "If the link does not open the app, enter this sign-in code instead:\n\n"
        f"{token}\n\n"
        "If you did not ask to sign in, ignore this email: nothing happens without the link.\n"
    )


async def issue_magic_links(
    session: AsyncSession,
    store: SessionStore,
    settings: Settings,
    encryptor: FieldEncryptor,
    context: AuditContext,
    *,
    email: str,
) -> list[MagicLinkEmail]:
    """Create a link for every non-withdrawn participant with this email; the emails to send.

    Does not commit: the caller commits before sending, so no link is mailed that the database
    does not hold.
    """
    address = email.strip().lower()
    if not address or len(address) > MAX_EMAIL_LENGTH:
        return []
    if context.ip and (
        await throttle_count(store, f"magic-link-ip:{context.ip}", IP_REQUEST_WINDOW, add=True)
        > IP_REQUEST_LIMIT
    ):
        logger.warning("magic_link_throttled", scope="ip")
        return []
    email_key = "magic-link-email:" + hash_secret(settings, "magic-link-email:" + address)
    if await throttle_count(store, email_key, EMAIL_REQUEST_WINDOW, add=True) > EMAIL_REQUEST_LIMIT:
        logger.warning("magic_link_throttled", scope="email")
        return []
    participants = (
        await session.scalars(
            select(Participant)
            .where(Participant.email_index == email_index(settings, address))
            .where(Participant.status != ParticipantStatus.WITHDRAWN)
            .where(Participant.email_encrypted.is_not(None))
            .order_by(Participant.created_at, Participant.id)
        )
    ).all()
    now = utcnow()
    expires_at = now + timedelta(minutes=settings.MAGIC_LINK_EXPIRE_MINUTES)
    emails: list[MagicLinkEmail] = []
    for participant in participants:
        assert participant.email_encrypted is not None
        try:
            # The address on file, which the blind index matched case-insensitively.
            address_on_file = encryptor.decrypt(participant.email_encrypted)
        except ValueError:
            logger.error("magic_link_undecryptable_email", participant_id=str(participant.id))
            continue
        token = await _issue_link(session, settings, context, participant, now, expires_at)
        emails.append(
            MagicLinkEmail(
                to=address_on_file,
                subject=EMAIL_SUBJECT,
                text=_email_text(settings, sign_in_url(settings, token), token),
            )
        )
    return emails


async def _issue_link(
    session: AsyncSession,
    settings: Settings,
    context: AuditContext,
    participant: Participant,
    now: datetime,
    expires_at: datetime,
    *,
    notification_id: uuid.UUID | None = None,
) -> str:
    """Store a new one-time link for the participant (its token's hash) and audit it; the
    token, which only the email will carry."""
    token = generate_secret_token()
    link = MagicLinkToken(
        id=uuid.uuid4(),
        participant_id=participant.id,
        token_hash=hash_link_token(settings, token),
        created_at=now,
        expires_at=expires_at,
    )
    session.add(link)
    after = {"link_id": str(link.id), "expires_at": expires_at.isoformat()}
    if notification_id is not None:
        after["notification_id"] = str(notification_id)
    await record_about(
        session,
        context,
        AuditSubject.participant(participant, AuditCategory.AUTH),
        "participant.magic_link_issued",
        after=after,
    )
    return token


async def issue_reminder_link(
    session: AsyncSession,
    settings: Settings,
    participant: Participant,
    *,
    notification_id: uuid.UUID,
) -> str:
    """A sign-in link for a reminder about to be sent: the URL, which holds the token (only its
    hash is stored). Works once, for REMINDER_LINK_EXPIRE_HOURS: a reminder is read later than
    a link someone just asked for. Does not commit: the dispatcher's claim does, before the
    message leaves."""
    now = utcnow()
    expires_at = now + timedelta(hours=settings.REMINDER_LINK_EXPIRE_HOURS)
    token = await _issue_link(
        session,
        settings,
        AuditContext.system(),
        participant,
        now,
        expires_at,
        notification_id=notification_id,
    )
    return sign_in_url(settings, token)


async def verify_magic_link(
    session: AsyncSession,
    store: SessionStore,
    settings: Settings,
    context: AuditContext,
    *,
    token: str,
) -> ParticipantTokens:
    """Exchange a link's token for a participant token, once. Every refusal is the same 401."""
    ip_key = f"magic-link-fail-ip:{context.ip}"
    if (
        context.ip
        and await throttle_count(store, ip_key, VERIFY_IP_FAILURE_WINDOW) >= VERIFY_IP_FAILURE_LIMIT
    ):
        seconds = int(VERIFY_IP_FAILURE_WINDOW.total_seconds())
        raise TooManyRequestsError(
            "Too many failed sign-in attempts from this address",
            details={"retry_after_seconds": seconds},
            headers={"Retry-After": str(seconds)},
        )
    token_hash = hash_link_token(settings, token.strip())
    now = utcnow()
    # One statement checks and consumes the link, so two concurrent uses cannot both succeed.
    consumed = (
        await session.execute(
            update(MagicLinkToken)
            .where(MagicLinkToken.token_hash == token_hash)
            .where(MagicLinkToken.used_at.is_(None))
            .where(MagicLinkToken.expires_at > now)
            .values(used_at=now)
            .returning(MagicLinkToken.id, MagicLinkToken.participant_id)
            .execution_options(synchronize_session=False)
        )
    ).one_or_none()
    participant = await session.get(Participant, consumed[1]) if consumed is not None else None
    if consumed is None or participant is None or participant.status == ParticipantStatus.WITHDRAWN:
        reason = await _refusal_reason(session, token_hash, now, consumed is not None)
        if context.ip:
            await throttle_count(store, ip_key, VERIFY_IP_FAILURE_WINDOW, add=True)
        await record_failed_sign_in(
            session, context, participant, {"method": "magic_link", "reason": reason}
        )
        raise UnauthorizedError(INVALID_LINK, keep_changes=True)
    await record_about(
        session,
        context.as_actor(ActorType.PARTICIPANT, str(participant.id)),
        AuditSubject.participant(participant, AuditCategory.AUTH),
        "participant.magic_link_used",
        after={"link_id": str(consumed[0])},
    )
    return await open_participant_login(
        session, settings, context, participant, method="magic_link"
    )


async def _refusal_reason(
    session: AsyncSession, token_hash: str, now: datetime, consumed: bool
) -> str:
    """Why a link was refused: recorded in the audit trail, never told to the caller."""
    if consumed:
        return "participant_withdrawn"
    link = await session.scalar(
        select(MagicLinkToken)
        .where(MagicLinkToken.token_hash == token_hash)
        .execution_options(populate_existing=True)
    )
    if link is None:
        return "unknown"
    if link.used_at is not None:
        return "already_used"
    if link.expires_at <= now:
        return "expired"
    return "unknown"
