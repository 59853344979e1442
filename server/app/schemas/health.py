from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel


class HealthRead(BaseModel):
    status: Literal["ok"]
    version: str


class DependencyHealth(BaseModel):
    status: Literal["ok", "down"]
    latency_ms: float
    required: bool
    error: str | None = None
    # Beat only: when it last ticked.
    last_seen_at: datetime | None = None


class DetailedHealthRead(BaseModel):
    status: Literal["ok", "degraded", "down"]
    version: str
    dependencies: dict[str, DependencyHealth]
