from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from app.models.audit import ActorType, AuditCategory


class AuditEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    sequence: int
    occurred_at: datetime
    actor_type: ActorType
    actor_id: str | None
    action: str
    category: AuditCategory
    entity_type: str | None
    entity_id: str | None
    study_id: uuid.UUID | None
    participant_id: uuid.UUID | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    ip: str | None
    user_agent: str | None
    request_id: str | None
    reason: str | None
    prev_hash: str
    hash: str


class AuditVerificationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    valid: bool
    events_checked: int
    first_broken_sequence: int | None
    first_broken_event_id: uuid.UUID | None
    problem: str | None
    last_hash: str | None
    verified_at: datetime | None
