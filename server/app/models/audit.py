"""The append-only audit trail and its keyed chain.

Writers insert events and nothing else. A single chainer links committed events afterwards, in
sequence order, into `audit_chain_links` (docs/adr/0004-audit-chain.md).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.db.base import Base, EnumString, UUIDPrimaryKeyMixin

# The prev_mac of the first link.
GENESIS_MAC = "0" * 64
# On PostgreSQL the BEFORE INSERT trigger of audit_events numbers each event from this sequence.
AUDIT_EVENT_SEQUENCE = "audit_events_sequence_seq"
# The one row of audit_chain_state.
CHAIN_STATE_ID = 1

_ChainPosition = BigInteger().with_variant(Integer(), "sqlite")


class AuditCategory(StrEnum):
    AUTH = "auth"
    CONSENT = "consent"
    ASSESSMENT = "assessment"
    VISIT = "visit"
    DATA = "data"
    CONFIG = "config"
    EXPORT = "export"


class ActorType(StrEnum):
    USER = "user"
    PARTICIPANT = "participant"
    SYSTEM = "system"
    ANONYMOUS = "anonymous"


class AuditEvent(UUIDPrimaryKeyMixin, Base):
    """One audited action. Never updated or deleted (database triggers refuse it)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("uq_audit_events_sequence", "sequence", unique=True),
        Index("ix_audit_events_study_id_occurred_at", "study_id", "occurred_at"),
        Index("ix_audit_events_participant_id", "participant_id"),
        Index("ix_audit_events_category_occurred_at", "category", "occurred_at"),
        Index("ix_audit_events_actor_id", "actor_id"),
    )

    # The order of the chain, given by the database at insert time: a PostgreSQL sequence
    # (a rolled-back insert leaves its number unused forever), one more than the highest on
    # SQLite, whose single writer leaves no gap.
    sequence: Mapped[int] = mapped_column(_ChainPosition)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_type: Mapped[ActorType] = mapped_column(EnumString(ActorType, 20))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    category: Mapped[AuditCategory] = mapped_column(EnumString(AuditCategory, 20))
    entity_type: Mapped[str | None] = mapped_column(String(64))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    study_id: Mapped[uuid.UUID | None]
    participant_id: Mapped[uuid.UUID | None]
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255))
    request_id: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    # The personal access token the actor acted through (docs/accounts.md), if any.
    token_id: Mapped[uuid.UUID | None]


class AuditChainLink(Base):
    """One position of the keyed chain: an event, or a gap (a number whose insert rolled back).

    `mac` is an HMAC-SHA256, with the key named by `key_id`, over the chain's id, the position,
    `prev_mac` and the event's canonical content. Append-only, like the events.
    """

    __tablename__ = "audit_chain_links"
    __table_args__ = (Index("uq_audit_chain_links_event_id", "event_id", unique=True),)

    sequence: Mapped[int] = mapped_column(_ChainPosition, primary_key=True, autoincrement=False)
    # None for a gap.
    event_id: Mapped[uuid.UUID | None]
    prev_mac: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(32))
    chained_at: Mapped[datetime]


class AuditChainState(Base):
    """The end of the chain as the chainer left it, and the row chainers lock to take turns.

    Writers of events never touch it. `chain_id`, fixed when the table is created, is part of
    every link's MAC and of every checkpoint, so checkpoints of another database never apply.
    """

    __tablename__ = "audit_chain_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    chain_id: Mapped[uuid.UUID]
    last_sequence: Mapped[int] = mapped_column(_ChainPosition)
    last_mac: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]
    last_checkpoint_sequence: Mapped[int] = mapped_column(_ChainPosition)
    last_checkpoint_at: Mapped[datetime | None]
