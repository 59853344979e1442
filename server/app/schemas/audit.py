from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from app.models.audit import ActorType, AuditCategory, AuditChainLink, AuditEvent


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
    # The personal access token the actor acted through, if any (docs/accounts.md).
    token_id: uuid.UUID | None = None
    # The event's link in the keyed chain (HMAC-SHA256, docs/adr/0004-audit-chain.md): null for
    # the few seconds until the chainer reaches it.
    prev_hash: str | None = None
    hash: str | None = None
    key_id: str | None = None

    @classmethod
    def from_row(cls, event: AuditEvent, link: AuditChainLink | None) -> AuditEventRead:
        read = cls.model_validate(event)
        if link is not None:
            read.prev_hash, read.hash, read.key_id = link.prev_mac, link.mac, link.key_id
        return read


class AuditVerificationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    valid: bool
    # Events whose links verified, from the start of the chain.
    events_checked: int
    first_broken_sequence: int | None
    first_broken_event_id: uuid.UUID | None
    problem: str | None
    # The MAC of the chain's last link, when valid.
    last_hash: str | None
    verified_at: datetime | None
    # The chain's last position, and the gaps in it: numbers whose insert rolled back.
    last_sequence: int
    gaps_checked: int
    # Signed checkpoints read from the checkpoint store and compared with the chain.
    checkpoints_checked: int
    # Committed events not chained yet (behind a number a running transaction still holds).
    events_pending: int
