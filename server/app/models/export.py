"""Export jobs (docs/exports.md): a file of a study's data made in the `exports` queue.

A job is queued by the API, claimed and run by a worker (running, with progress), and ends ready
(with the file's size and SHA-256) or failed (with a reason). The file expires: the sweep removes
it and marks the job expired; its creator or a researcher may delete it before.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, EnumString, JSONType, TimestampMixin, UUIDPrimaryKeyMixin


class ExportStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"
    EXPIRED = "expired"
    DELETED = "deleted"


class ExportJob(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "export_jobs"
    __table_args__ = (
        Index("ix_export_jobs_study_id_created_at", "study_id", "created_at"),
        Index("ix_export_jobs_status_expires_at", "status", "expires_at"),
    )

    study_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    # The creator's site when they are a site-scoped member: the export holds that site only.
    scope_site_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("study_sites.id", ondelete="CASCADE")
    )
    format: Mapped[str] = mapped_column(String(20))
    dataset: Mapped[str] = mapped_column(String(20))
    filters: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    include_contact_details: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[ExportStatus] = mapped_column(
        EnumString(ExportStatus, 20), default=ExportStatus.QUEUED
    )
    rows_done: Mapped[int] = mapped_column(Integer, default=0)
    rows_total: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    file_path: Mapped[str | None] = mapped_column(String(512))
    file_name: Mapped[str | None] = mapped_column(String(255))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
