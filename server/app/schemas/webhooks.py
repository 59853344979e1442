"""Webhook subscriptions and their delivery log (docs/webhooks.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from app.models.outbox import DeliveryStatus, EventType
from app.schemas.outbox import DeliveryAttemptRead

DEFAULT_SECRET_OVERLAP_SECONDS = 24 * 3600
MAX_SECRET_OVERLAP_SECONDS = 7 * 24 * 3600


class WebhookEventType(StrEnum):
    """The event types a webhook may subscribe to: every `EventType` but the test event, which
    only a webhook's own "send test event" action sends (tests/webhooks check they agree)."""

    SESSION_COMPLETED = EventType.SESSION_COMPLETED.value
    TASK_ACCEPTED = EventType.TASK_ACCEPTED.value
    PARTICIPANT_ENROLLED = EventType.PARTICIPANT_ENROLLED.value
    PARTICIPANT_WITHDRAWN = EventType.PARTICIPANT_WITHDRAWN.value
    CONSENT_SIGNED = EventType.CONSENT_SIGNED.value
    VISIT_MISSED = EventType.VISIT_MISSED.value
    EXPORT_READY = EventType.EXPORT_READY.value

    def as_event_type(self) -> EventType:
        return EventType(self.value)


_URL = Field(
    min_length=1,
    max_length=2000,
    description="https (http outside production); a host that resolves to public addresses "
    "only, unless WEBHOOK_ALLOWED_HOSTS names it",
    examples=["https://example.org/metricis-webhook"],
)


class WebhookCreate(BaseModel):
    url: str = _URL
    events: list[WebhookEventType] = Field(min_length=1, max_length=len(WebhookEventType))
    active: bool = True
    description: str | None = Field(default=None, max_length=255)


class WebhookUpdate(BaseModel):
    url: str | None = Field(default=None, min_length=1, max_length=2000)
    events: list[WebhookEventType] | None = Field(
        default=None, min_length=1, max_length=len(WebhookEventType)
    )
    active: bool | None = Field(
        default=None, description="false pauses it: deliveries wait, new events skip it"
    )
    description: str | None = Field(default=None, max_length=255)


class SecretRotation(BaseModel):
    overlap_seconds: int = Field(
        default=DEFAULT_SECRET_OVERLAP_SECONDS,
        ge=0,
        le=MAX_SECRET_OVERLAP_SECONDS,
        description="How long the previous secret keeps signing beside the new one (0: not at "
        "all; at most 7 days)",
    )


class WebhookRead(BaseModel):
    """A webhook as every route answers it; the secret only where it is made (create, rotate)."""

    id: uuid.UUID
    study_id: uuid.UUID
    url: str
    events: list[WebhookEventType]
    active: bool
    description: str | None
    secret_created_at: datetime
    previous_secret_expires_at: datetime | None = Field(
        description="While set, deliveries are signed with the previous secret as well"
    )
    created_at: datetime
    updated_at: datetime


class WebhookWithSecret(WebhookRead):
    secret: str = Field(description="Shown this once; store it to verify signatures")


class DeliveryRead(BaseModel):
    id: uuid.UUID
    webhook_id: uuid.UUID
    event_id: uuid.UUID
    event_type: EventType
    event_version: int
    status: DeliveryStatus
    attempts: int = Field(description="Every attempt made, redeliveries included")
    next_attempt_at: datetime | None = Field(
        description="The next retry, or the end of the lease while being sent"
    )
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_duration_ms: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


class EventBody(BaseModel):
    """The JSON body a receiver gets for the event."""

    id: uuid.UUID
    event: EventType
    version: int
    timestamp: datetime
    study_id: uuid.UUID
    data: dict[str, Any]


class DeliveryDetailRead(DeliveryRead):
    event: EventBody
    attempt_log: list[DeliveryAttemptRead]
