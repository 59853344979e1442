from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Final, Literal, NotRequired

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, with_config
from pydantic_core import InitErrorDetails
from typing_extensions import TypedDict

from app.models.assessment import SessionStatus
from app.schemas.common import IsoDateTime, VersionNumber
from app.scoring import scorer_for
from app.scoring.trial_format import (
    RT_MAX_MS,
    RT_MIN_MS,
    TASK_NAME_MAX_LENGTH,
    TASK_NAME_PATTERN,
    TRIAL_INDEX_MAX,
    TrialFormat,
)

MAX_TRIALS_PER_REQUEST = 20_000

TaskName = Annotated[
    str, Field(min_length=1, max_length=TASK_NAME_MAX_LENGTH, pattern=TASK_NAME_PATTERN)
]

# Pydantic's own error types for a value that is not of the field's JSON type, as for `rt`.
_JSON_TYPE_ERRORS: Final[Mapping[str, str]] = {"number": "float_type", "integer": "int_type"}


# A typed dictionary rather than a model: a submission holds hundreds of trials, and every step
# after validation (hashing, the source document, COPY, scoring) wants plain dictionaries, so a
# model per trial was built only to be dumped again. Validation fills the defaults: every trial
# has every field below, exactly as dumping the model gave (stored content hashes depend on it).
@with_config(ConfigDict(extra="allow", allow_inf_nan=False, strict=True))
class TrialIn(TypedDict):
    """One trial as the client sent it; fields beyond these are kept as they came.

    Strict: a number must be a JSON number and a boolean a JSON boolean (`"350"` and `"true"`
    are refused, not converted). `TrialList` applies the same rule to the numeric fields of the
    task's published trial format.
    """

    task: TaskName
    trial_index: Annotated[int, Field(ge=0, le=TRIAL_INDEX_MAX)]
    rt: NotRequired[Annotated[float | None, Field(default=None, ge=RT_MIN_MS, le=RT_MAX_MS)]]
    response: NotRequired[Annotated[Any, Field(default=None)]]
    stimulus: NotRequired[Annotated[Any, Field(default=None)]]
    correct: NotRequired[Annotated[bool | None, Field(default=None)]]
    is_practice: NotRequired[Annotated[bool, Field(default=False)]]
    condition: NotRequired[Annotated[str | None, Field(default=None, max_length=64)]]


def _format_numbers_are_numbers(trials: list[TrialIn]) -> list[TrialIn]:
    """Refuse a numeric field of the task's trial format (`span_length`, `level`, a PRO's
    `response`, ...) that holds no JSON number of its type, as `TrialIn` does for `rt`.

    Run over the whole list rather than per trial, with each task's format looked up once:
    a request holds up to 20,000 trials, most of tasks without such fields.
    """
    formats: dict[str, TrialFormat] = {}
    errors: list[InitErrorDetails] = []
    for index, trial in enumerate(trials):
        task = trial["task"]
        trial_format = formats.get(task)
        if trial_format is None:
            trial_format = formats[task] = scorer_for(task).trial_format
        if not trial_format.has_numeric_fields:
            continue
        values: Mapping[str, Any] = trial
        errors.extend(
            InitErrorDetails(
                type=_JSON_TYPE_ERRORS[error.json_type],
                loc=(index, error.field),
                input=values[error.field],
            )
            for error in trial_format.type_errors(values)
        )
    if errors:
        # A ValidationError, so that each error points at its own trial and field.
        raise ValidationError.from_exception_data("trials", errors)
    return trials


TrialList = Annotated[list[TrialIn], AfterValidator(_format_numbers_are_numbers)]
"""The trials of a submission or of an offline session."""


class SubmitRequest(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    session_id: uuid.UUID
    task_summaries: dict[TaskName, dict[str, Any]] = Field(default_factory=dict, max_length=100)
    trials: TrialList = Field(default_factory=list, max_length=MAX_TRIALS_PER_REQUEST)
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
    battery_version: VersionNumber | None = None
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
    tasks: list[TaskResultRead] | None = Field(
        default=None,
        description="The task results: always in GET /session/{id}, in GET /sessions with "
        "`include=tasks`; null otherwise",
    )


class RescoreResponse(BaseModel):
    session_id: uuid.UUID
    rescored: list[str]
