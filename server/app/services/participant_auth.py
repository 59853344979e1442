"""Participants as principals: access codes, participant tokens and their login rows.

A participant token reaches only that participant's own resources. Failed access-code sign-ins
are throttled like staff sign-ins: per participant (5, then locked for 15 minutes) and per address.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.core.errors import LockedError, TooManyRequestsError, UnauthorizedError
from app.core.security import (
    InvalidTokenError,
    TokenType,
    create_token,
    decode_token,
    hash_secret,
)
from app.models.audit import ActorType, AuditCategory
from app.models.participant import Participant, ParticipantLogin, WithdrawalScope
from app.models.study import Study
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.principals import ParticipantPrincipal
from app.services.session_store import SessionStore, throttle_count

ACCESS_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and typed
ACCESS_CODE_LENGTH = 10
MAX_FAILED_CODES = 5
CODE_LOCKOUT = timedelta(minutes=15)
IP_FAILURE_LIMIT = 20
IP_FAILURE_WINDOW = timedelta(minutes=15)
INVALID_CODE = "Invalid study code, participant or access code"


@dataclass(frozen=True, slots=True)
class ParticipantTokens:
    access_token: str
    expires_in: int
    participant: Participant


def generate_access_code() -> str:
    raw = "".join(secrets.choice(ACCESS_CODE_ALPHABET) for _ in range(ACCESS_CODE_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def normalize_access_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def hash_access_code(settings: Settings, code: str) -> str:
    return hash_secret(settings, "access-code:" + normalize_access_code(code))


async def open_participant_login(
    session: AsyncSession,
    settings: Settings,
    context: AuditContext,
    participant: Participant,
    *,
    method: str,
) -> ParticipantTokens:
    now = utcnow()
    lifetime = timedelta(hours=settings.PARTICIPANT_TOKEN_EXPIRE_HOURS)
    login = ParticipantLogin(
        id=uuid.uuid4(),
        participant_id=participant.id,
        method=method,
        device=(context.user_agent or None) and context.user_agent[:255],
        ip=context.ip,
        created_at=now,
        expires_at=now + lifetime,
    )
    session.add(login)
    token = create_token(
        settings,
        subject=str(participant.id),
        token_type=TokenType.PARTICIPANT_ACCESS,
        lifetime=lifetime,
        session_id=login.id,
        extra_claims={"study": str(participant.study_id)},
    )
    await record_about(
        session,
        context.as_actor(ActorType.PARTICIPANT, str(participant.id)),
        AuditSubject.participant(participant, AuditCategory.AUTH),
        "participant.login",
        after={"method": method},
    )
    return ParticipantTokens(
        access_token=token.token, expires_in=int(lifetime.total_seconds()), participant=participant
    )


async def login_with_access_code(
    session: AsyncSession,
    store: SessionStore,
    settings: Settings,
    context: AuditContext,
    *,
    study_code: str,
    participant_code: str,
    access_code: str,
) -> ParticipantTokens:
    ip_key = f"participant-fail-ip:{context.ip}"
    if context.ip and await throttle_count(store, ip_key, IP_FAILURE_WINDOW) >= IP_FAILURE_LIMIT:
        raise TooManyRequestsError(
            "Too many failed sign-in attempts from this address",
            headers={"Retry-After": str(int(IP_FAILURE_WINDOW.total_seconds()))},
        )
    account_key = "participant-fail:" + hash_secret(
        settings, f"{study_code.strip().upper()}/{participant_code.strip()}"
    )
    if await throttle_count(store, account_key, CODE_LOCKOUT) >= MAX_FAILED_CODES:
        raise _locked()
    participant = await session.scalar(
        select(Participant)
        .join(Study, Study.id == Participant.study_id)
        .where(Study.code == study_code.strip().upper())
        .where(Participant.participant_code == participant_code.strip())
    )
    valid = (
        participant is not None
        and participant.access_code_hash is not None
        and secrets.compare_digest(
            participant.access_code_hash, hash_access_code(settings, access_code)
        )
        and participant.withdrawal_scope != WithdrawalScope.DELETE_DATA
    )
    if not valid or participant is None:
        if context.ip:
            await throttle_count(store, ip_key, IP_FAILURE_WINDOW, add=True)
        failures = await throttle_count(store, account_key, CODE_LOCKOUT, add=True)
        await record_failed_sign_in(session, context, participant, {"method": "access_code"})
        if failures >= MAX_FAILED_CODES:
            raise _locked()
        raise UnauthorizedError(INVALID_CODE, keep_changes=True)
    return await open_participant_login(
        session, settings, context, participant, method="access_code"
    )


async def record_failed_sign_in(
    session: AsyncSession,
    context: AuditContext,
    participant: Participant | None,
    details: dict[str, str],
) -> None:
    """A refused participant sign-in, whatever the method; `participant` is None when the
    credentials named nobody."""
    await record_about(
        session,
        context,
        AuditSubject.participant(participant, AuditCategory.AUTH),
        "participant.login_failed",
        after=details,
    )


def _locked() -> LockedError:
    seconds = int(CODE_LOCKOUT.total_seconds())
    return LockedError(
        "Too many failed sign-in attempts; try again later",
        details={"retry_after_seconds": seconds},
        headers={"Retry-After": str(seconds)},
        keep_changes=True,
    )


async def authenticate_participant_claims(
    session: AsyncSession, claims: dict[str, object]
) -> ParticipantPrincipal:
    try:
        participant_id = uuid.UUID(str(claims["sub"]))
        login_id = uuid.UUID(str(claims.get("sid")))
    except (KeyError, ValueError) as exc:
        raise UnauthorizedError("The access token is invalid or has expired") from exc
    row = (
        await session.execute(
            select(ParticipantLogin, Participant)
            .join(Participant, Participant.id == ParticipantLogin.participant_id)
            .where(ParticipantLogin.id == login_id)
        )
    ).one_or_none()
    if row is None:
        raise UnauthorizedError("The access token is invalid or has expired")
    login, participant = row
    if (
        login.participant_id != participant_id
        or login.revoked_at is not None
        or participant.withdrawal_scope == WithdrawalScope.DELETE_DATA
    ):
        raise UnauthorizedError("The sign-in has ended")
    return ParticipantPrincipal(
        participant_id=participant.id, study_id=participant.study_id, login_id=login.id
    )


def decode_participant_token(settings: Settings, token: str) -> dict[str, object]:
    try:
        return decode_token(settings, token, TokenType.PARTICIPANT_ACCESS)
    except InvalidTokenError as exc:
        raise UnauthorizedError("The access token is invalid or has expired") from exc


async def revoke_participant_logins(session: AsyncSession, participant_id: uuid.UUID) -> None:
    await session.execute(
        update(ParticipantLogin)
        .where(ParticipantLogin.participant_id == participant_id)
        .where(ParticipantLogin.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
