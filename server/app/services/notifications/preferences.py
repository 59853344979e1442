"""Which channels a participant receives notifications on, and the signed unsubscribe link.

An opt-out is a row per participant and channel. Opting out cancels that channel's scheduled
notifications at once; the dispatcher checks again before sending, so a row scheduled a moment
earlier is not sent either.

The unsubscribe link of an email carries a token signed with SESSION_SECRET_KEY (HMAC-SHA256)
over the participant's id and the channel: it needs no sign-in, works from any mail client
(RFC 8058 one-click) and never expires, since an old reminder must still let its reader stop the
next ones. It can do nothing but unsubscribe that participant from that channel.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.core.errors import ValidationFailedError, field_error
from app.core.security import hash_secret
from app.models.audit import ActorType, AuditCategory
from app.models.notification import NotificationChannel, NotificationOptOut
from app.models.participant import Participant
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.notifications.scheduling import CancelReason, cancel_pending
from app.services.participants import participant_for_principal
from app.services.policy import Capability
from app.services.principals import ParticipantPrincipal, Principal

# The page of the participant client that asks the API to unsubscribe (as the magic link's
# sign-in page does); the one-click header of the email posts to the API route directly.
UNSUBSCRIBE_PAGE_PATH = "/participant/unsubscribe"
UNSUBSCRIBE_API_PATH = "/api/notifications/unsubscribe"
INVALID_LINK = "This unsubscribe link is not valid"


class OptOutSource:
    LINK = "link"
    PARTICIPANT = "participant"
    STAFF = "staff"


def _mac(settings: Settings, participant_id: uuid.UUID, channel: NotificationChannel) -> str:
    return hash_secret(settings, f"notification-unsubscribe:{participant_id}:{channel.value}")[:32]


def unsubscribe_token(
    settings: Settings, participant_id: uuid.UUID, channel: NotificationChannel
) -> str:
    return f"{participant_id.hex}.{channel.value}.{_mac(settings, participant_id, channel)}"


def unsubscribe_urls(settings: Settings, token: str) -> tuple[str, str]:
    """(the page a person opens, the URL a mail client posts to for one-click unsubscribe)."""
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    query = "?" + urlencode({"token": token})
    return base + UNSUBSCRIBE_PAGE_PATH + query, base + UNSUBSCRIBE_API_PATH + query


def _read_token(settings: Settings, token: str) -> tuple[uuid.UUID, NotificationChannel]:
    parts = token.strip().split(".")
    try:
        participant_id = uuid.UUID(hex=parts[0])
        channel = NotificationChannel(parts[1])
    except (ValueError, IndexError):
        raise _invalid_link() from None
    if len(parts) != 3 or not hmac.compare_digest(
        parts[2], _mac(settings, participant_id, channel)
    ):
        raise _invalid_link()
    return participant_id, channel


def _invalid_link() -> ValidationFailedError:
    return field_error("token", INVALID_LINK)


@dataclass(frozen=True, slots=True)
class OptOutView:
    channel: NotificationChannel
    source: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Preferences:
    participant_id: uuid.UUID
    opt_outs: list[OptOutView]

    def subscribed(self, channel: NotificationChannel) -> bool:
        return all(opt_out.channel is not channel for opt_out in self.opt_outs)


async def _preferences(session: AsyncSession, participant_id: uuid.UUID) -> Preferences:
    rows = (
        await session.scalars(
            select(NotificationOptOut)
            .where(NotificationOptOut.participant_id == participant_id)
            .order_by(NotificationOptOut.channel)
        )
    ).all()
    return Preferences(
        participant_id, [OptOutView(row.channel, row.source, row.created_at) for row in rows]
    )


async def _opt_out(
    session: AsyncSession, participant_id: uuid.UUID, channel: NotificationChannel, source: str
) -> int:
    """Record the opt-out (once) and cancel the channel's scheduled notifications."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    await session.execute(
        dialect.insert(NotificationOptOut)
        .values(
            id=uuid.uuid4(),
            participant_id=participant_id,
            channel=channel,
            source=source,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(
            index_elements=[NotificationOptOut.participant_id, NotificationOptOut.channel]
        )
    )
    return await cancel_pending(
        session, participant_id=participant_id, channel=channel, reason=CancelReason.UNSUBSCRIBED
    )


async def get_preferences(
    session: AsyncSession, principal: Principal, participant_id: uuid.UUID
) -> Preferences:
    participant = await participant_for_principal(
        session, principal, participant_id, Capability.READ
    )
    return await _preferences(session, participant.id)


async def update_preferences(
    session: AsyncSession,
    context: AuditContext,
    principal: Principal,
    participant_id: uuid.UUID,
    *,
    subscribed: dict[NotificationChannel, bool],
    reason: str | None,
) -> Preferences:
    """Opt a participant out of (False) or back into (True) channels. Staff need the right to
    edit participants; a participant token changes its own choices only."""
    participant = await participant_for_principal(
        session, principal, participant_id, Capability.EDIT_PARTICIPANTS
    )
    source = (
        OptOutSource.PARTICIPANT
        if isinstance(principal, ParticipantPrincipal)
        else OptOutSource.STAFF
    )
    before = await _preferences(session, participant.id)
    cancelled = 0
    for channel, wanted in subscribed.items():
        if wanted == before.subscribed(channel):
            continue
        if wanted:
            await session.execute(
                delete(NotificationOptOut).where(
                    NotificationOptOut.participant_id == participant.id,
                    NotificationOptOut.channel == channel,
                )
            )
        else:
            cancelled += await _opt_out(session, participant.id, channel, source)
    after = await _preferences(session, participant.id)
    if after.opt_outs != before.opt_outs:
        await record_about(
            session,
            context,
            AuditSubject.participant(participant, AuditCategory.DATA),
            "notification_preferences.update",
            before=_snapshot(before),
            after={**_snapshot(after), "cancelled_notifications": cancelled},
            reason=reason,
        )
    return after


def _snapshot(preferences: Preferences) -> dict[str, bool]:
    return {
        f"{channel.value}_subscribed": preferences.subscribed(channel)
        for channel in NotificationChannel
    }


async def unsubscribe_with_token(
    session: AsyncSession, settings: Settings, context: AuditContext, token: str
) -> tuple[Participant, NotificationChannel]:
    """Follow a signed unsubscribe link: idempotent, 422 for a token that is not ours."""
    participant_id, channel = _read_token(settings, token)
    participant = await session.get(Participant, participant_id)
    if participant is None:
        raise _invalid_link()
    before = await _preferences(session, participant.id)
    if not before.subscribed(channel):
        return participant, channel
    cancelled = await _opt_out(session, participant.id, channel, OptOutSource.LINK)
    await record_about(
        session,
        # Whoever holds the link acts for the participant it was sent to.
        context.as_actor(ActorType.PARTICIPANT, str(participant.id)),
        AuditSubject.participant(participant, AuditCategory.DATA),
        "notification_preferences.unsubscribe",
        before=_snapshot(before),
        after={
            **_snapshot(await _preferences(session, participant.id)),
            "via": "signed_link",
            "cancelled_notifications": cancelled,
        },
    )
    return participant, channel
