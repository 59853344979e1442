"""Notifications to participants (visit reminders and the like) and their channel opt-outs.

A notification row is the outbox of one message: written when the message is planned, claimed
by a worker before the provider is called, and kept as the delivery log (docs/notifications.md).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, EnumString, TimestampMixin, UUIDPrimaryKeyMixin


class NotificationChannel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


class NotificationStatus(StrEnum):
    SCHEDULED = "scheduled"  # waiting for its time (or for a retry after a certain refusal)
    SENDING = "sending"  # claimed by a worker: the provider is being called
    SENT = "sent"  # the provider took the message
    FAILED = "failed"  # not sent, or sent with an unknown outcome; never retried by itself
    CANCELLED = "cancelled"  # no longer wanted (visit done, withdrawal, unsubscribed)


# Statuses that may still lead to a message without a person's action.
PENDING_STATUSES = (NotificationStatus.SCHEDULED,)


class NotificationKind(StrEnum):
    VISIT_REMINDER = "visit_reminder"
    # A message that checks delivery (an operator's check, the tests and the benchmark).
    TEST = "test"


class Notification(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("dedupe_key"),
        # The dispatcher's question: scheduled rows whose time has come, oldest first.
        Index("ix_notifications_status_due_at", "status", "due_at"),
        Index("ix_notifications_study_id_send_at", "study_id", "send_at"),
        Index("ix_notifications_participant_id_send_at", "participant_id", "send_at"),
        Index("ix_notifications_visit_id", "visit_id"),
    )

    study_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    participant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE")
    )
    # The visit a reminder is about. No foreign key yet: visits arrive in a later migration,
    # which adds it.
    visit_id: Mapped[uuid.UUID | None]
    kind: Mapped[NotificationKind] = mapped_column(EnumString(NotificationKind, 40))
    channel: Mapped[NotificationChannel] = mapped_column(EnumString(NotificationChannel, 10))
    status: Mapped[NotificationStatus] = mapped_column(
        EnumString(NotificationStatus, 20), default=NotificationStatus.SCHEDULED
    )
    # When the message was planned for, as the caller asked (quiet hours applied if it asked).
    send_at: Mapped[datetime]
    # When the dispatcher next looks at the row: send_at, then later for a retry or the end of
    # quiet hours.
    due_at: Mapped[datetime]
    language: Mapped[str] = mapped_column(String(16))
    # The rendered text, kept for the delivery log and for a resend to send the same words. It
    # never holds contact details: the address is read from the participant at send time.
    subject: Mapped[str | None] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    # Whoever writes the row picks a key naming what it is about (for example the visit, the
    # reminder rule and the channel), so writing it twice inserts it once.
    dedupe_key: Mapped[str] = mapped_column(String(200))
    # Where it went, masked as read_only members see contact details (a***@example.org, ***58).
    destination_hint: Mapped[str | None] = mapped_column(String(100))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    # What went wrong, redacted of contact details.
    error: Mapped[str | None] = mapped_column(Text)
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    cancel_reason: Mapped[str | None] = mapped_column(String(64))
    # The notification a person resent this one from.
    resend_of: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("notifications.id", ondelete="SET NULL"), index=True
    )


class NotificationOptOut(UUIDPrimaryKeyMixin, Base):
    """A participant who asked not to receive messages on one channel."""

    __tablename__ = "notification_opt_outs"
    __table_args__ = (UniqueConstraint("participant_id", "channel"),)

    participant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE")
    )
    channel: Mapped[NotificationChannel] = mapped_column(EnumString(NotificationChannel, 10))
    # `link` (the signed link of an email), `participant` (the participant's own token) or
    # `staff` (recorded for them, for example after a phone call).
    source: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime]
