"""A study's visit schedule, its immutable versions and events, and the participants' visits."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, EnumString, JSONType, TimestampMixin, UUIDPrimaryKeyMixin


class VisitAnchor(StrEnum):
    """The date an event's offset counts from."""

    ENROLLMENT_DATE = "enrollment_date"
    ANCHOR_DATE = "anchor_date"  # the participant's own anchor (surgery, diagnosis, ...)


class VisitStatus(StrEnum):
    SCHEDULED = "scheduled"
    OPEN = "open"
    COMPLETED = "completed"
    MISSED = "missed"
    CANCELLED = "cancelled"


# Statuses the clock moves between (scheduled → open → missed); the other two are final.
PENDING_VISIT_STATUSES = (VisitStatus.SCHEDULED, VisitStatus.OPEN, VisitStatus.MISSED)


# `Visit.reminders_next_at` of a visit the reminder scan has not computed yet.
REMINDERS_NOT_COMPUTED = datetime(1970, 1, 1, tzinfo=UTC)


class VisitCancellation(StrEnum):
    PARTICIPANT_WITHDRAWN = "participant_withdrawn"
    SCHEDULE_CHANGED = "schedule_changed"  # the event left the schedule, or its window passed


class Schedule(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    """A study's schedule: one per study; its content lives in `ScheduleVersion` rows."""

    __tablename__ = "schedules"

    study_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), unique=True
    )
    current_version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )


class ScheduleVersion(UUIDPrimaryKeyMixin, Base):
    """One immutable state of a schedule: what the visits generated from it followed."""

    __tablename__ = "schedule_versions"
    __table_args__ = (UniqueConstraint("schedule_id", "version"),)

    schedule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    # {"start": "HH:MM", "end": "HH:MM"} in each participant's local time, or None.
    reminder_quiet_hours: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime]
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )


class ScheduleEvent(UUIDPrimaryKeyMixin, Base):
    """One event of one schedule version (baseline, week 4, ...), with its reminder rules."""

    __tablename__ = "schedule_events"
    __table_args__ = (UniqueConstraint("schedule_version_id", "key"),)

    schedule_version_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("schedule_versions.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(Integer)
    # Stable across versions: a visit follows its event from version to version by this key.
    key: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(255))
    anchor: Mapped[VisitAnchor] = mapped_column(EnumString(VisitAnchor, 20))
    offset_days: Mapped[int] = mapped_column(Integer)
    window_before_days: Mapped[int] = mapped_column(Integer)
    window_after_days: Mapped[int] = mapped_column(Integer)
    battery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("batteries.id", ondelete="RESTRICT"))
    # None: once; else every `repeat_every_days` days, `repeat_count` occurrences in all.
    repeat_every_days: Mapped[int | None] = mapped_column(Integer)
    repeat_count: Mapped[int] = mapped_column(Integer, default=1)
    # [ReminderRule as JSON] (app/schemas/schedules.py), validated before it is stored.
    reminders: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)


class Visit(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    """One occurrence of one event for one participant.

    The window is a span of whole local days in `timezone`, kept both as those calendar dates and
    as the UTC instants they begin and end at (local midnight, computed with zoneinfo, so a DST
    change inside the window makes it an hour shorter or longer, never shifted). `status` is
    stored for the final states and for the indexes; between two runs of the status scan the
    services compute scheduled, open and missed from the window and the clock.
    """

    __tablename__ = "visits"
    __table_args__ = (
        UniqueConstraint("participant_id", "event_key", "occurrence"),
        Index("ix_visits_status_window_opens_at", "status", "window_opens_at"),
        Index("ix_visits_status_window_closes_at", "status", "window_closes_at"),
        Index("ix_visits_study_id_window_closes_at", "study_id", "window_closes_at"),
        # The reminder scan's question: pending visits whose next reminder is due soon (or not
        # computed yet: 1970). Partial: completed, missed and cancelled visits are never asked.
        Index(
            "ix_visits_reminders_next_at",
            "reminders_next_at",
            postgresql_where=text("status IN ('scheduled', 'open')"),
            sqlite_where=text("status IN ('scheduled', 'open')"),
        ),
    )

    study_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    participant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE")
    )
    schedule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    schedule_version: Mapped[int] = mapped_column(Integer)
    schedule_event_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("schedule_events.id", ondelete="CASCADE"), index=True
    )
    event_key: Mapped[str] = mapped_column(String(64))
    occurrence: Mapped[int] = mapped_column(Integer)  # 1 for the first
    label: Mapped[str] = mapped_column(String(255))
    battery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("batteries.id", ondelete="RESTRICT"))
    anchor: Mapped[VisitAnchor] = mapped_column(EnumString(VisitAnchor, 20))
    anchor_date: Mapped[date]
    timezone: Mapped[str] = mapped_column(String(64))
    due_date: Mapped[date]
    window_start_date: Mapped[date]  # first local day of the window
    window_end_date: Mapped[date]  # last local day of the window (inclusive)
    due_at: Mapped[datetime]  # local midnight starting the due date, in UTC
    window_opens_at: Mapped[datetime]  # local midnight starting the first day, in UTC
    window_closes_at: Mapped[datetime]  # local midnight ending the last day, in UTC
    status: Mapped[VisitStatus] = mapped_column(
        EnumString(VisitStatus, 20), default=VisitStatus.SCHEDULED
    )
    completed_session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("assessment_sessions.id", ondelete="SET NULL")
    )
    completed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    cancellation_reason: Mapped[VisitCancellation | None] = mapped_column(
        EnumString(VisitCancellation, 32)
    )
    rescheduled_at: Mapped[datetime | None]
    reschedule_reason: Mapped[str | None] = mapped_column(Text)
    # When the reminder scan looks at this visit next: the send time of its earliest reminder
    # not yet written as a notification, far in the future when none is left, and
    # REMINDERS_NOT_COMPUTED (1970, so the next scan takes it) for a new visit or one whose
    # window or rules changed.
    reminders_next_at: Mapped[datetime] = mapped_column(
        default=lambda: REMINDERS_NOT_COMPUTED, server_default=text("'1970-01-01 00:00:00'")
    )
    # Counts the changes (reschedule, regeneration) that cancelled the visit's pending
    # reminders: part of each reminder's dedupe key, so the new window gets reminders anew.
    reminder_round: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
