"""Writing notifications and cancelling the pending ones: what the visit scheduler calls.

Neither function commits: the row is written in the caller's transaction, with the change that
made it due (an outbox row), and the dispatcher picks it up once committed.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.errors import field_error
from app.core.events import emit_once
from app.models.notification import (
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationOptOut,
    NotificationStatus,
)
from app.models.participant import Participant, ParticipantStatus
from app.services.notifications.quiet_hours import QuietHours, apply_quiet_hours

# After-commit event: notifications are due now; the workers layer answers it by asking the
# dispatcher to run at once instead of at beat's next tick.
NOTIFICATIONS_DUE = "notifications.due"

MAX_SMS_LENGTH = 1600  # what Twilio-compatible APIs accept in one request
MAX_SUBJECT_LENGTH = 255
MAX_DEDUPE_KEY_LENGTH = 200


class CancelReason:
    """Why pending notifications were cancelled, as stored in `cancel_reason`."""

    VISIT_COMPLETED = "visit_completed"
    VISIT_CANCELLED = "visit_cancelled"
    VISIT_RESCHEDULED = "visit_rescheduled"
    VISIT_MISSED = "visit_missed"
    # The schedule changed: the visit moved to another window or event, or left the schedule.
    SCHEDULE_CHANGED = "schedule_changed"
    PARTICIPANT_WITHDRAWN = "participant_withdrawn"
    UNSUBSCRIBED = "unsubscribed"


def participant_zone(participant: Participant) -> ZoneInfo:
    """The participant's time zone; UTC for a name the zone database does not know."""
    try:
        return ZoneInfo(participant.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _insert(session: AsyncSession, values: dict[str, Any]) -> Any:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return (
        dialect.insert(Notification)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[Notification.dedupe_key])
        .returning(Notification.id)
    )


async def schedule_notification(
    session: AsyncSession,
    *,
    study_id: uuid.UUID,
    participant_id: uuid.UUID,
    visit_id: uuid.UUID | None,
    kind: NotificationKind,
    channel: NotificationChannel,
    send_at: datetime,
    language: str,
    subject: str | None,
    body: str,
    dedupe_key: str,
    quiet_hours: QuietHours | None = None,
    resend_of: uuid.UUID | None = None,
) -> Notification | None:
    """Plan one message; None when a notification with this `dedupe_key` already exists (the
    insert is `ON CONFLICT DO NOTHING`, so a scan may run twice, or two at once).

    With `quiet_hours`, a `send_at` inside them (in the participant's time zone) moves to their
    end. A participant who has withdrawn, or who opted out of the channel, gets the row already
    `cancelled`: the delivery log then says why no message went out.
    """
    if send_at.tzinfo is None:
        raise field_error("send_at", "send_at must carry a time zone")
    if not body.strip():
        raise field_error("body", "The message has no text")
    if channel is NotificationChannel.EMAIL and not (subject and subject.strip()):
        raise field_error("subject", "An email needs a subject")
    if subject is not None and ("\n" in subject or "\r" in subject):
        raise field_error("subject", "A subject is one line")
    if subject is not None and len(subject) > MAX_SUBJECT_LENGTH:
        raise field_error("subject", f"The subject is longer than {MAX_SUBJECT_LENGTH} characters")
    if channel is NotificationChannel.SMS and len(body) > MAX_SMS_LENGTH:
        raise field_error("body", f"An SMS holds at most {MAX_SMS_LENGTH} characters")
    if not dedupe_key or len(dedupe_key) > MAX_DEDUPE_KEY_LENGTH:
        raise field_error("dedupe_key", f"dedupe_key takes 1 to {MAX_DEDUPE_KEY_LENGTH} characters")
    participant = await session.get(Participant, participant_id)
    if participant is None or participant.study_id != study_id:
        raise field_error("participant_id", "No such participant in this study")
    if quiet_hours is not None:
        send_at = apply_quiet_hours(
            send_at, participant_zone(participant), quiet_hours.start, quiet_hours.end
        )
    now = utcnow()
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "study_id": study_id,
        "participant_id": participant_id,
        "visit_id": visit_id,
        "kind": kind,
        "channel": channel,
        "status": NotificationStatus.SCHEDULED,
        "send_at": send_at,
        "due_at": send_at,
        "language": language,
        "subject": subject.strip() if subject else None,
        "body": body,
        "dedupe_key": dedupe_key,
        "attempts": 0,
        "resend_of": resend_of,
        "created_at": now,
        "updated_at": now,
    }
    reason = await _reason_not_to_send(session, participant, channel)
    if reason is not None:
        values.update(status=NotificationStatus.CANCELLED, cancelled_at=now, cancel_reason=reason)
    inserted = (await session.execute(_insert(session, values))).scalar_one_or_none()
    if inserted is None:
        return None
    notification = await session.get(Notification, inserted)
    assert notification is not None
    if notification.status is NotificationStatus.SCHEDULED and send_at <= now:
        emit_once(session, NOTIFICATIONS_DUE, {})
    return notification


async def _reason_not_to_send(
    session: AsyncSession, participant: Participant, channel: NotificationChannel
) -> str | None:
    if participant.status is ParticipantStatus.WITHDRAWN:
        return CancelReason.PARTICIPANT_WITHDRAWN
    if await is_opted_out(session, participant.id, channel):
        return CancelReason.UNSUBSCRIBED
    return None


async def is_opted_out(
    session: AsyncSession, participant_id: uuid.UUID, channel: NotificationChannel
) -> bool:
    found = await session.scalar(
        select(NotificationOptOut.id).where(
            NotificationOptOut.participant_id == participant_id,
            NotificationOptOut.channel == channel,
        )
    )
    return found is not None


async def cancel_pending(
    session: AsyncSession,
    *,
    visit_id: uuid.UUID | None = None,
    participant_id: uuid.UUID | None = None,
    channel: NotificationChannel | None = None,
    reason: str,
) -> int:
    """Cancel the scheduled notifications of a visit, of a participant, or both (and of one
    channel only, when given); how many were cancelled.

    A notification already `sending` is not touched: its message is with the provider or on
    its way, and the dispatcher records what became of it.
    """
    if visit_id is None and participant_id is None:
        raise ValueError("cancel_pending needs a visit_id or a participant_id")
    statement = update(Notification).where(Notification.status == NotificationStatus.SCHEDULED)
    if visit_id is not None:
        statement = statement.where(Notification.visit_id == visit_id)
    if participant_id is not None:
        statement = statement.where(Notification.participant_id == participant_id)
    if channel is not None:
        statement = statement.where(Notification.channel == channel)
    now = utcnow()
    result = await session.execute(
        statement.values(
            status=NotificationStatus.CANCELLED,
            cancelled_at=now,
            cancel_reason=reason,
            updated_at=now,
        ).execution_options(synchronize_session="fetch")
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def cancel_pending_of_visits(
    session: AsyncSession, visit_ids: list[uuid.UUID], *, reason: str
) -> int:
    """`cancel_pending` for many visits at once (a schedule change, the status scan)."""
    cancelled = 0
    now = utcnow()
    for start in range(0, len(visit_ids), 1000):
        result = await session.execute(
            update(Notification)
            .where(Notification.status == NotificationStatus.SCHEDULED)
            .where(Notification.visit_id.in_(visit_ids[start : start + 1000]))
            .values(
                status=NotificationStatus.CANCELLED,
                cancelled_at=now,
                cancel_reason=reason,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        cancelled += int(getattr(result, "rowcount", 0) or 0)
    return cancelled


async def forget_destinations(session: AsyncSession, participant_id: uuid.UUID) -> None:
    """Erase the masked addresses of a participant's notifications (withdrawal with erasure)."""
    await session.execute(
        update(Notification)
        .where(Notification.participant_id == participant_id)
        .values(destination_hint=None)
        .execution_options(synchronize_session="fetch")
    )
