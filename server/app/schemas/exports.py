"""Export jobs (docs/exports.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from app.models.export import ExportStatus

ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class ExportFiltersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site_ids: list[uuid.UUID] = Field(default_factory=list, max_length=500)
    participant_ids: list[uuid.UUID] = Field(default_factory=list, max_length=10000)
    visit_keys: list[ShortText] = Field(
        default_factory=list, max_length=200, description="schedule event keys, e.g. baseline"
    )
    started_from: AwareDatetime | None = Field(
        default=None, description="sessions started at or after this instant"
    )
    started_to: AwareDatetime | None = Field(
        default=None, description="sessions started before this instant"
    )
    tasks: list[ShortText] = Field(default_factory=list, max_length=200)

    @model_validator(mode="after")
    def _ordered(self) -> ExportFiltersIn:
        if self.started_from and self.started_to and self.started_from >= self.started_to:
            raise ValueError("started_from must be before started_to")
        return self


class ExportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    study_id: uuid.UUID
    format: Literal["csv", "json", "parquet", "bids"]
    dataset: Literal["trials", "summaries", "sessions", "participants", "all"] = "all"
    filters: ExportFiltersIn = Field(default_factory=ExportFiltersIn)
    include_pii: bool = Field(
        default=False,
        description="participants' email and phone (needs the right to see contact details)",
    )

    @model_validator(mode="after")
    def _bids_holds_trials(self) -> ExportCreate:
        # A BIDS dataset holds the trials (beh files) and a participants table, never scores
        # (derived data) nor contact details.
        if self.format == "bids" and self.dataset not in ("trials", "all"):
            raise ValueError("the bids format holds the trials: dataset must be trials or all")
        if self.format == "bids" and self.include_pii:
            raise ValueError("the bids format never holds contact details")
        return self


class ExportProgress(BaseModel):
    rows_done: int
    rows_total: int | None
    percent: float | None

    @classmethod
    def of(cls, rows_done: int, rows_total: int | None) -> ExportProgress:
        """The progress of a job (an export or a report), percent to one decimal."""
        percent = None
        if rows_total is not None:
            percent = (
                round(min(rows_done, rows_total) * 100.0 / rows_total, 1) if rows_total else 100.0
            )
        return cls(rows_done=rows_done, rows_total=rows_total, percent=percent)


class ExportRead(BaseModel):
    id: uuid.UUID
    study_id: uuid.UUID
    site_id: uuid.UUID | None
    created_by: uuid.UUID | None
    format: str
    dataset: str
    filters: dict[str, object]
    include_pii: bool
    status: ExportStatus
    progress: ExportProgress
    file_name: str | None
    size_bytes: int | None
    sha256: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None
