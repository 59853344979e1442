"""What the delivery logs show of the outbox: shared by webhooks and REDCap pushes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from app.models.outbox import AttemptOutcome


class DeliveryAttemptRead(BaseModel):
    """One attempt at a delivery, as its log row holds it."""

    model_config = ConfigDict(from_attributes=True)

    number: int
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    outcome: AttemptOutcome
    status_code: int | None
    error: str | None
