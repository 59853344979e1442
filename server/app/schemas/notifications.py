from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from app.models.notification import NotificationChannel, NotificationKind, NotificationStatus


class NotificationRead(BaseModel):
    id: uuid.UUID
    study_id: uuid.UUID
    participant_id: uuid.UUID
    participant_code: str
    site_id: uuid.UUID | None
    visit_id: uuid.UUID | None
    kind: NotificationKind
    channel: NotificationChannel
    status: NotificationStatus
    send_at: datetime = Field(description="When the message was planned for")
    due_at: datetime = Field(
        description="When the dispatcher looks at it next (later than send_at after a retry "
        "or inside quiet hours)"
    )
    language: str
    subject: str | None
    body: str = Field(description="The text as stored; emails get an unsubscribe footer")
    destination: str | None = Field(
        description="Where it was sent, masked (a***@example.org, ***58); null until claimed"
    )
    attempts: int
    provider_message_id: str | None
    error: str | None
    claimed_at: datetime | None
    sent_at: datetime | None
    cancelled_at: datetime | None
    cancel_reason: str | None
    resend_of: uuid.UUID | None = Field(description="The notification a person resent")
    created_at: datetime
    updated_at: datetime


class ResendRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=1000)


class StatusCounts(BaseModel):
    scheduled: int
    sending: int
    sent: int
    failed: int
    cancelled: int


class ChannelCounts(BaseModel):
    email: StatusCounts
    sms: StatusCounts


class DeliveryStatsRead(BaseModel):
    study_id: uuid.UUID
    total: int
    by_status: StatusCounts
    by_channel: ChannelCounts
    delivery_rate: float | None = Field(
        description="sent / (sent + failed); null when none has ended either way"
    )
    interrupted: int = Field(
        description="Failed because their worker died mid-send: delivery unknown"
    )
    retried: int = Field(description="Needed more than one attempt")


class OptOutRead(BaseModel):
    channel: NotificationChannel
    source: str = Field(description="link (an email's unsubscribe link), participant or staff")
    created_at: datetime


class NotificationPreferencesRead(BaseModel):
    participant_id: uuid.UUID
    email_subscribed: bool
    sms_subscribed: bool
    opt_outs: list[OptOutRead]


class NotificationPreferencesUpdate(BaseModel):
    email_subscribed: bool | None = None
    sms_subscribed: bool | None = None
    reason: str | None = Field(default=None, max_length=1000)


class UnsubscribeResult(BaseModel):
    channel: NotificationChannel
    unsubscribed: bool = True
