"""PDF reports (docs/reports.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.models.export import ExportStatus
from app.schemas.exports import ExportProgress


class ParticipantReportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_pii: bool = Field(
        default=False,
        description="the participant's email and phone (needs the right to see contact details)",
    )


class StudyReportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReportRead(BaseModel):
    id: uuid.UUID
    kind: Literal["participant", "study"]
    study_id: uuid.UUID
    participant_id: uuid.UUID | None
    site_id: uuid.UUID | None = Field(description="the creator's site when site-scoped")
    created_by: uuid.UUID | None
    include_pii: bool
    status: ExportStatus
    progress: ExportProgress
    file_name: str | None
    size_bytes: int | None
    sha256: str | None
    error: str | None
    download_url: str | None = Field(description="set once the report is ready")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None
