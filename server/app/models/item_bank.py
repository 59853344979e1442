"""IRT item banks, their immutable versions and the adaptive tests run on them
(docs/item-banks.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, EnumString, JSONType, TimestampMixin, UUIDPrimaryKeyMixin


class ItemBank(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    """A study's bank; its content lives in versions so a test can be rescored against exactly
    the parameters it ran with."""

    __tablename__ = "item_banks"

    study_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    current_version: Mapped[int] = mapped_column(Integer, default=1)
    archived: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class ItemBankVersion(UUIDPrimaryKeyMixin, Base):
    """One immutable state of a bank: items with parameters and texts, and the CAT rules."""

    __tablename__ = "item_bank_versions"
    __table_args__ = (UniqueConstraint("bank_id", "version"),)

    bank_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("item_banks.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    # [{"id", "a", "b": [thresholds], "domain", "text": {lang: str}, "options": {lang: [str]}}]
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    # {"target_se", "min_items", "max_items", "randomesque", "domain_targets"}
    rules: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime]
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )


class CatSessionStatus(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"


class CatSessionOrigin(StrEnum):
    ONLINE = "online"  # run step by step through the API
    OFFLINE = "offline"  # run on a device, uploaded in a sync item and rescored


class CatSession(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    """One adaptive test of a participant on one pinned bank version, inside an assessment
    session (whose task result receives the final estimate)."""

    __tablename__ = "cat_sessions"
    __table_args__ = (
        # One test per bank and assessment session, as a task result is one per task.
        UniqueConstraint("assessment_session_id", "bank_id"),
        Index("ix_cat_sessions_participant_id", "participant_id"),
    )

    study_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), index=True
    )
    participant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE")
    )
    assessment_session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("assessment_sessions.id", ondelete="CASCADE")
    )
    bank_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("item_banks.id", ondelete="CASCADE"))
    bank_version_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("item_bank_versions.id", ondelete="RESTRICT")
    )
    bank_version: Mapped[int] = mapped_column(Integer)
    origin: Mapped[CatSessionOrigin] = mapped_column(EnumString(CatSessionOrigin, 16))
    status: Mapped[CatSessionStatus] = mapped_column(EnumString(CatSessionStatus, 16))
    # The current estimate (the prior's before the first answer), the final one once finished.
    theta: Mapped[float] = mapped_column(Float)
    se: Mapped[float] = mapped_column(Float)
    n_items: Mapped[int] = mapped_column(Integer)
    stop_reason: Mapped[str | None] = mapped_column(String(32))
    # What the device reported for a test it ran offline.
    device_theta: Mapped[float | None] = mapped_column(Float)
    device_se: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    task_result_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("task_results.id", ondelete="SET NULL")
    )
    started_by_user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )


class CatSessionStep(UUIDPrimaryKeyMixin, Base):
    """One item given in an adaptive test, its answer and the estimate after that answer."""

    __tablename__ = "cat_session_steps"
    __table_args__ = (UniqueConstraint("cat_session_id", "position"),)

    cat_session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("cat_sessions.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(Integer)  # 1, 2, ...
    item_id: Mapped[str] = mapped_column(String(64))
    response: Mapped[int | None] = mapped_column(Integer)
    theta: Mapped[float | None] = mapped_column(Float)
    se: Mapped[float | None] = mapped_column(Float)
    given_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
