"""REDCap projects a study feeds (docs/redcap.md): one for the study, optionally one per site.

The API token is stored encrypted with the ENCRYPTION_KEYS Fernet keys: the server must send
it to REDCap, so it cannot be hashed; it is never returned, logged or put in the audit trail.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, TimestampMixin, UUIDPrimaryKeyMixin


class RedcapProject(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    """Where a study's (or one site's) completed sessions go, and how their scores map.

    `site_id` empty: the study's project. A site's row overrides it for that site's
    participants, enabled or not (a disabled site row means the site sends nothing).
    """

    __tablename__ = "redcap_projects"
    __table_args__ = (
        Index("ix_redcap_projects_study_id_site_id", "study_id", "site_id"),
        Index("ix_redcap_projects_trigger_token_hash", "trigger_token_hash", unique=True),
    )

    study_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    site_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("study_sites.id", ondelete="CASCADE")
    )
    api_url: Mapped[str] = mapped_column(String(2000))
    token_encrypted: Mapped[str] = mapped_column(Text)
    record_id_field: Mapped[str] = mapped_column(String(100))
    # "<task>.<metric>" -> REDCap field name.
    field_mapping: Mapped[dict[str, Any]]
    # visit (schedule event key) -> redcap_event_name; empty for a classic project.
    event_mapping: Mapped[dict[str, Any]]
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # What the last successful check found.
    longitudinal: Mapped[bool] = mapped_column(Boolean, default=False)
    project_title: Mapped[str | None] = mapped_column(String(500))
    redcap_version: Mapped[str | None] = mapped_column(String(50))
    checked_at: Mapped[datetime | None]
    # REDCap's own id of the project, from the last check: a Data Entry Trigger must name it.
    redcap_project_ref: Mapped[str | None] = mapped_column(String(50))
    # The unguessable token of the project's Data Entry Trigger URL: a keyed hash to find the
    # project by, and the token encrypted to show it to those who configure the study.
    trigger_token_hash: Mapped[str] = mapped_column(String(64))
    trigger_token_encrypted: Mapped[str] = mapped_column(Text)
    # From the last check: the instrument of each mapped field, and the project's repeating
    # instruments and events ({"event": unique event name or "", "form": instrument or "" for
    # a whole repeating event}); a push writes a repeating instrument's fields as an instance.
    field_forms: Mapped[dict[str, Any]] = mapped_column(default=dict)
    repeating_forms: Mapped[list[dict[str, Any]]] = mapped_column(default=list)


class RedcapRepeatInstance(UUIDPrimaryKeyMixin, Base):
    """Which instance of a repeating instrument (or event) of a record a session was given.

    Chosen once, at the session's first push (the next free number of that record, event and
    instrument), and reused on every later push of the same session: a retry or a redelivery
    overwrites its own instance, never a new one.
    """

    __tablename__ = "redcap_repeat_instances"
    __table_args__ = (
        UniqueConstraint(
            "redcap_project_id",
            "record_id",
            "event_name",
            "instrument",
            "session_id",
            name="uq_redcap_repeat_instances_session",
        ),
        UniqueConstraint(
            "redcap_project_id",
            "record_id",
            "event_name",
            "instrument",
            "instance",
            name="uq_redcap_repeat_instances_instance",
        ),
    )

    redcap_project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("redcap_projects.id", ondelete="CASCADE")
    )
    record_id: Mapped[str] = mapped_column(String(100))
    event_name: Mapped[str] = mapped_column(String(100))  # "" in a classic project
    instrument: Mapped[str] = mapped_column(String(100))  # "" for a whole repeating event
    session_id: Mapped[uuid.UUID]
    instance: Mapped[int] = mapped_column(Integer)
