"""The append-only, hash-chained audit trail."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.db.base import Base, EnumString, UUIDPrimaryKeyMixin

GENESIS_HASH = "0" * 64


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

    # Position in the chain, 1, 2, 3, ... without gaps.
    sequence: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
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
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditChainHead(Base):
    """A single row holding the end of the chain.

    Writers update it first, which takes a row lock on PostgreSQL and the write lock on SQLite:
    concurrent writers queue behind each other until commit, so the chain cannot fork.
    """

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_sequence: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    last_hash: Mapped[str] = mapped_column(String(64))
