"""Webhook subscriptions of a study (docs/webhooks.md)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, TimestampMixin, UUIDPrimaryKeyMixin


class WebhookSubscription(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    """A URL that receives a study's events of the chosen types, signed with its secret.

    The secret is needed to sign, so it is stored encrypted (the ENCRYPTION_KEYS Fernet keys),
    never hashed; it is shown once. After a rotation the previous secret keeps signing beside the
    new one until `previous_secret_expires_at`, so receivers can switch without losing events.
    """

    __tablename__ = "webhook_subscriptions"

    study_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(255))
    event_types: Mapped[list[str]]
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    secret_encrypted: Mapped[str] = mapped_column(Text)
    secret_created_at: Mapped[datetime]
    previous_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None]
