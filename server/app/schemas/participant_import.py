"""The report of a participant CSV import (`POST /api/participants/import`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ImportRowError(BaseModel):
    field: str | None = Field(description="The CSV column; null for the row as a whole.")
    message: str


class ImportRowRead(BaseModel):
    row: int = Field(description="1 for the first data row, 2 for the next, ...")
    line: int = Field(description="The line of the file where the row starts (header: line 1).")
    participant_id: str | None
    status: Literal["valid", "invalid"]
    errors: list[ImportRowError]


class ImportReportRead(BaseModel):
    dry_run: bool
    valid: bool = Field(description="True when every row is valid.")
    total_rows: int
    created: int = Field(description="Participants created: 0 for a dry run.")
    rows: list[ImportRowRead]
