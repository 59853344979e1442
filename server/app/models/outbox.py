"""The outbox: events that leave the server, one delivery per destination, every attempt logged.

An event is written in the transaction of the change that caused it, with one delivery row per
destination that wants it (a webhook subscription today, REDCap later). Workers claim due
deliveries, send them and record each attempt (docs/adr/0006-outbox.md).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, EnumString, JSONType, TimestampMixin, UUIDPrimaryKeyMixin


class EventType(StrEnum):
    SESSION_COMPLETED = "session.completed"
    TASK_ACCEPTED = "task.accepted"
    PARTICIPANT_ENROLLED = "participant.enrolled"
    PARTICIPANT_WITHDRAWN = "participant.withdrawn"
    CONSENT_SIGNED = "consent.signed"
    VISIT_MISSED = "visit.missed"  # written by the visit status scan
    # Defined so that subscriptions can name it; emitted once data exports exist.
    EXPORT_READY = "export.ready"
    # Sent only by a subscription's "send test event" action, to that subscription alone.
    WEBHOOK_TEST = "webhook.test"


class DestinationKind(StrEnum):
    WEBHOOK = "webhook"
    REDCAP = "redcap"


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its first attempt (or sent again by hand)
    DELIVERING = "delivering"  # claimed by a worker, until the lease runs out
    DELIVERED = "delivered"
    FAILED = "failed"  # the last attempt failed; the next one is scheduled
    DEAD = "dead"  # every attempt failed; only a manual redelivery sends it again


class AttemptOutcome(StrEnum):
    IN_PROGRESS = "in_progress"
    DELIVERED = "delivered"  # a 2xx answer
    HTTP_ERROR = "http_error"  # any other status, redirects included (never followed)
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    REFUSED_TARGET = "refused_target"  # the address is not allowed (private, loopback, ...)
    CONFIGURATION_ERROR = "configuration_error"  # e.g. a secret no configured key decrypts
    INTERRUPTED = "interrupted"  # the worker died before recording the result


class OutboxEvent(Base):
    """One event, with a stable id that every delivery of it carries (receivers dedupe on it).
    The payload holds identifiers and summaries, never contact details."""

    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_events_study_id_occurred_at", "study_id", "occurred_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    type: Mapped[EventType] = mapped_column(EnumString(EventType, 50))
    version: Mapped[int] = mapped_column(Integer)
    study_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    # The participant the event is about, if any: erasing a participant's data erases it too.
    participant_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    occurred_at: Mapped[datetime]


class OutboxDelivery(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    """One event to one destination: its state, its retry schedule and its last answer."""

    __tablename__ = "outbox_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "subscription_id"),
        UniqueConstraint("event_id", "redcap_project_id"),
        Index("ix_outbox_deliveries_subscription_id_created_at", "subscription_id", "created_at"),
        Index(
            "ix_outbox_deliveries_redcap_project_id_created_at", "redcap_project_id", "created_at"
        ),
    )

    # Indexed by the unique constraint, whose first column it is.
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("outbox_events.id", ondelete="CASCADE"))
    destination: Mapped[DestinationKind] = mapped_column(EnumString(DestinationKind, 20))
    subscription_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE")
    )
    # The REDCap project of a `redcap` delivery (docs/redcap.md).
    redcap_project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("redcap_projects.id", ondelete="CASCADE")
    )
    status: Mapped[DeliveryStatus] = mapped_column(
        EnumString(DeliveryStatus, 20), default=DeliveryStatus.PENDING
    )
    # Every attempt ever made; `round_attempts` counts those since the delivery was created or
    # last redelivered by hand, against OUTBOX_MAX_ATTEMPTS.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    round_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When a worker may claim it: the next retry, or the end of the lease of the worker that
    # holds it. Empty once delivered or dead.
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    # The attempt in flight: only the worker that holds it may record the result.
    current_attempt_id: Mapped[uuid.UUID | None]
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_duration_ms: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None]


class OutboxDeliveryAttempt(UUIDPrimaryKeyMixin, Base):
    """One attempt, written when it starts, so an attempt cut short by a dying worker is still
    in the log (as `interrupted`)."""

    __tablename__ = "outbox_delivery_attempts"
    __table_args__ = (UniqueConstraint("delivery_id", "number"),)

    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("outbox_deliveries.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[AttemptOutcome] = mapped_column(EnumString(AttemptOutcome, 20))
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
