from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.models.assessment import SessionStatus
from app.schemas.common import IsoDateTime

MAX_TRIALS_PER_REQUEST = 20_000
# Bounds that no real reaction time or index crosses; anything beyond is a client bug.
RT_MIN_MS = -60_000.0
RT_MAX_MS = 3_600_000.0

TaskName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


class TrialIn(BaseModel):
    """One trial as the client sent it; fields beyond these are kept as they came."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    task: TaskName
    trial_index: int = Field(ge=0, le=1_000_000)
    rt: float | None = Field(default=None, ge=RT_MIN_MS, le=RT_MAX_MS)
    response: Any = None
    stimulus: Any = None
    correct: bool | None = None
    is_practice: bool = False
    condition: str | None = Field(default=None, max_length=64)


class SubmitRequest(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    session_id: uuid.UUID
    task_summaries: dict[TaskName, dict[str, Any]] = Field(default_factory=dict, max_length=100)
    trials: list[TrialIn] = Field(default_factory=list, max_length=MAX_TRIALS_PER_REQUEST)
    device_info: dict[str, Any] | None = None
    completed_at: IsoDateTime | None = None
    client_time: IsoDateTime | None = None


class FlagRead(BaseModel):
    code: str
    task: str | None
    evidence: dict[str, Any]


class SubmitReceipt(BaseModel):
    status: Literal["success"] = "success"
    session_id: uuid.UUID
    tasks_stored: list[str]
    trials_stored: int
    scores: dict[str, dict[str, Any]]
    flags: list[FlagRead]
    checksum: str


class SessionStartRequest(BaseModel):
    participant_id: str = Field(
        min_length=1, max_length=64, description="The participant's UUID or its study code"
    )
    battery_id: uuid.UUID
    battery_version: int | None = Field(default=None, ge=1)
    visit_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = Field(
        default=None, description="A client-generated id, for sessions started offline"
    )
    device: dict[str, Any] | None = None
    started_at: IsoDateTime | None = Field(
        default=None, description="When the client started it (offline starts), with its offset"
    )
    client_time: IsoDateTime | None = None


class BatteryTaskRead(BaseModel):
    module_id: str
    config: dict[str, Any]


class SessionBatteryRead(BaseModel):
    id: uuid.UUID
    version: int
    name: str
    tasks: list[BatteryTaskRead]


class SessionStartResponse(BaseModel):
    session_id: uuid.UUID
    participant_id: uuid.UUID
    battery: SessionBatteryRead
    started_at: datetime
    expires_at: datetime


class SessionEndRequest(BaseModel):
    session_id: uuid.UUID
    status: Literal["completed", "abandoned"]


class TaskResultRead(BaseModel):
    task: str
    n_trials: int
    scores: dict[str, Any]
    flags: list[FlagRead]
    scorer: str
    scorer_version: str
    accepted_at: datetime
    source_sha256: str
    rescored: int


class SessionRead(BaseModel):
    id: uuid.UUID
    study_id: uuid.UUID
    participant_id: uuid.UUID
    participant_code: str
    battery_id: uuid.UUID
    battery_version: int
    visit_id: uuid.UUID | None
    status: SessionStatus
    started_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    clock_offset_seconds: float | None
    tasks: list[TaskResultRead] | None = None


class RescoreResponse(BaseModel):
    session_id: uuid.UUID
    rescored: list[str]
