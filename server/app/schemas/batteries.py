"""Batteries and their immutable versions (docs/batteries.md, batteries)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class BatteryTaskIn(BaseModel):
    """A task as written: its configuration may be partial; the module's defaults fill the rest."""

    # A misspelt key would otherwise vanish silently from a clinical configuration.
    model_config = ConfigDict(extra="forbid")

    module_id: str = Field(min_length=1, max_length=64, examples=["simple-rt"])
    config: dict[str, Any] | None = Field(
        default=None,
        description="Parameters to change from the module's `default_config`; null means none",
        examples=[{"n_trials": 30}],
    )


class BatteryTask(BaseModel):
    """A task as stored: canonical module id and the effective configuration (defaults merged)."""

    module_id: str
    config: dict[str, Any]


# A battery runs in one sitting; more tasks than this is a configuration mistake.
MAX_BATTERY_TASKS = 50

_TASKS_DESCRIPTION = (
    f"1 to {MAX_BATTERY_TASKS} tasks, in the order they run; each module at most once. "
    "Problems are reported as `tasks.<index>.module_id` or `tasks.<index>.config.<parameter>`."
)


class BatteryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    study_id: uuid.UUID
    name: str = Field(min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=10_000)
    tasks: list[BatteryTaskIn] = Field(description=_TASKS_DESCRIPTION)
    estimated_minutes: int | None = Field(default=None, ge=1, le=600)


class BatteryUpdate(BaseModel):
    """Any subset of the content; `tasks` replaces the whole list. Each effective change is a new
    version; a PATCH that changes nothing creates none."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=10_000)
    tasks: list[BatteryTaskIn] | None = Field(default=None, description=_TASKS_DESCRIPTION)
    estimated_minutes: int | None = Field(default=None, ge=1, le=600)
    reason: str | None = Field(
        default=None, max_length=1000, description="Why, for the audit trail"
    )


class BatteryRead(BaseModel):
    """A battery with the content of its current version."""

    id: uuid.UUID
    study_id: uuid.UUID
    name: str
    description: str | None
    version: int = Field(description="The current version")
    tasks: list[BatteryTask]
    estimated_minutes: int | None
    archived: bool
    created_at: datetime
    updated_at: datetime
    version_created_at: datetime
    version_created_by: uuid.UUID | None


class BatteryVersionRead(BaseModel):
    """One immutable version: what a session that ran it ran."""

    battery_id: uuid.UUID
    version: int
    is_current: bool
    name: str
    description: str | None
    tasks: list[BatteryTask]
    estimated_minutes: int | None
    created_at: datetime
    created_by: uuid.UUID | None
