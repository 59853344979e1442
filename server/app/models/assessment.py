"""Assessment sessions, the tasks they stored, and trials as queryable rows."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, EnumString, JSONType, TimestampMixin, UUIDPrimaryKeyMixin


class SessionStatus(StrEnum):
    STARTED = "started"
    COMPLETED = "completed"
    ABANDONED = "abandoned"
    EXPIRED = "expired"


class AssessmentSession(TimestampMixin, Base):
    """One run of a battery by a participant. The id may come from the client (offline starts)."""

    __tablename__ = "assessment_sessions"
    __table_args__ = (
        Index("ix_assessment_sessions_study_id_started_at", "study_id", "started_at"),
        Index("ix_assessment_sessions_participant_id", "participant_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    study_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    participant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE")
    )
    battery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("batteries.id", ondelete="RESTRICT"))
    battery_version_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("battery_versions.id", ondelete="RESTRICT")
    )
    battery_version: Mapped[int] = mapped_column(Integer)
    visit_id: Mapped[uuid.UUID | None]
    status: Mapped[SessionStatus] = mapped_column(
        EnumString(SessionStatus, 20), default=SessionStatus.STARTED
    )
    started_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    device: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Device clock minus server clock, in seconds, when the client told its time.
    clock_offset_seconds: Mapped[float | None] = mapped_column(Float)
    started_by_user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )


class TaskResult(UUIDPrimaryKeyMixin, Base):
    """One task of one session, accepted once: the receipt, the source document, the scores."""

    __tablename__ = "task_results"
    __table_args__ = (
        UniqueConstraint("session_id", "task"),
        # The dashboard's data quality reads the tasks received lately (docs/dashboard.md).
        Index("ix_task_results_accepted_at", "accepted_at"),
    )

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("assessment_sessions.id", ondelete="CASCADE")
    )
    task: Mapped[str] = mapped_column(String(64))
    # SHA-256 of the canonical task content: equal content is a replay, other content a conflict.
    content_hash: Mapped[str] = mapped_column(String(64))
    source_path: Mapped[str] = mapped_column(String(512))
    source_sha256: Mapped[str] = mapped_column(String(64))
    source_bytes: Mapped[int] = mapped_column(BigInteger)
    n_trials: Mapped[int] = mapped_column(Integer)
    client_summary: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    scores: Mapped[dict[str, Any]] = mapped_column(JSONType)
    flags: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    scorer: Mapped[str] = mapped_column(String(64))
    scorer_version: Mapped[str] = mapped_column(String(64))
    # Earlier results, kept when the task is rescored: [{scores, flags, scorer_version, at}].
    previous_scores: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    accepted_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]


class Trial(Base):
    """One trial as a row, written in bulk (COPY on PostgreSQL)."""

    __tablename__ = "trials"
    __table_args__ = (
        Index("ix_trials_session_id_task", "session_id", "task"),
        Index("ix_trials_study_id_task", "study_id", "task"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    # No foreign keys: checked per row, they were most of the database's work for a 500-trial
    # COPY. A trial is written only with its task result, in the transaction holding its
    # session's row locked, and deleted explicitly with its session (participant erasure).
    study_id: Mapped[uuid.UUID]
    participant_id: Mapped[uuid.UUID]
    session_id: Mapped[uuid.UUID]
    task: Mapped[str] = mapped_column(String(64))
    trial_index: Mapped[int] = mapped_column(Integer)
    rt: Mapped[float | None] = mapped_column(Float)
    correct: Mapped[bool | None] = mapped_column(Boolean)
    response: Mapped[str | None] = mapped_column(Text)
    stimulus: Mapped[str | None] = mapped_column(Text)
    condition: Mapped[str | None] = mapped_column(String(64))
    is_practice: Mapped[bool] = mapped_column(Boolean, default=False)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
