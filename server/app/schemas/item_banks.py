"""IRT item banks and adaptive testing (docs/item-banks.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.common import DB_INTEGER_MAX

_ITEMS_DESCRIPTION = (
    "Items: `{id, a, b, domain?, text: {lang: text}, options?: {lang: [labels]}}`; `b` is a "
    "number (2PL) or the ordered thresholds (graded response model). Problems are reported as "
    "`items.<index>.<field>`."
)
_RULES_DESCRIPTION = (
    "`{target_se, min_items, max_items, randomesque, domain_targets}`; missing rules take the "
    "defaults (0.3, 1, 20, 1, equal shares)."
)


class ItemBankCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    study_id: uuid.UUID
    name: str = Field(min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=4000)
    rules: dict[str, Any] | None = Field(default=None, description=_RULES_DESCRIPTION)
    items: list[Any] = Field(description=_ITEMS_DESCRIPTION)


class ItemBankVersionCreate(BaseModel):
    """The whole content of the next version; a missing name, description or rules keep the
    current ones."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=4000)
    rules: dict[str, Any] | None = Field(default=None, description=_RULES_DESCRIPTION)
    items: list[Any] = Field(description=_ITEMS_DESCRIPTION)
    reason: str | None = Field(default=None, max_length=1000)


class ItemRead(BaseModel):
    id: str
    a: float
    b: list[float]
    model: str = Field(description="`2pl` (one threshold) or `grm`")
    domain: str | None
    text: dict[str, str]
    options: dict[str, list[str]]


class CatRulesRead(BaseModel):
    target_se: float
    min_items: int
    max_items: int
    randomesque: int
    domain_targets: dict[str, float]


class ItemBankRead(BaseModel):
    id: uuid.UUID
    study_id: uuid.UUID
    name: str
    description: str | None
    version: int
    current_version: int
    archived: bool
    rules: CatRulesRead
    items: list[ItemRead]
    version_created_at: datetime
    version_created_by: uuid.UUID | None


class ResponseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(min_length=1, max_length=64)
    response: int = Field(ge=0, le=100, description="The category, 0 .. number of thresholds")


class ResponsesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    responses: list[ResponseIn] = Field(default_factory=list, max_length=2000)
    version: int | None = Field(
        default=None,
        ge=1,
        le=DB_INTEGER_MAX,
        description="The bank version the test runs on; default the current",
    )


class CatNextRead(BaseModel):
    next_item: ItemRead | None
    theta: float
    se: float
    t_score: float
    n_items: int
    finished: bool
    reason: str | None = Field(description="`se_reached`, `max_items` or `bank_exhausted`")
    version: int


class ScoreRead(BaseModel):
    theta: float
    se: float
    t_score: float
    n_items: int
    version: int
    scorer_version: str


# ---------------------------------------------------------------------------------------------
# Stored adaptive tests


class CatSessionStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: uuid.UUID = Field(
        description="The running assessment session of the participant the test belongs to"
    )


class CatAnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(min_length=1, max_length=64, description="The item the test gave")
    response: int = Field(ge=0, le=100, description="The category, 0 .. number of thresholds")


class CatStepRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    position: int
    item_id: str
    response: int | None = Field(description="null: given, not answered yet")
    theta: float | None = Field(description="The estimate after this answer")
    se: float | None
    given_at: datetime
    answered_at: datetime | None


class CatSessionRead(BaseModel):
    id: uuid.UUID
    bank_id: uuid.UUID
    bank_version: int = Field(description="The bank version pinned when the test started")
    study_id: uuid.UUID
    participant_id: uuid.UUID
    session_id: uuid.UUID = Field(description="The assessment session")
    origin: str = Field(description="`online` (this API) or `offline` (uploaded by sync)")
    status: str = Field(description="`running` or `finished`")
    theta: float = Field(description="The current estimate; the final one once finished")
    se: float
    t_score: float
    n_items: int
    stop_reason: str | None = Field(
        description="`se_reached`, `max_items`, `bank_exhausted`, or `ended_on_device` (offline)"
    )
    next_item_id: str | None = Field(description="The item given and not answered yet")
    device_theta: float | None
    device_se: float | None
    started_at: datetime
    finished_at: datetime | None
    task: str = Field(description="The task its result is stored as: `item-bank-<bank id>`")
    task_result_id: uuid.UUID | None
    scorer_version: str | None
    flags: list[dict[str, Any]] = Field(description="The task result's flags once finished")
    steps: list[CatStepRead]


class CatNextItemRead(BaseModel):
    cat_session_id: uuid.UUID
    status: str
    finished: bool
    position: int | None = Field(description="The step the item is given at (1, 2, ...)")
    item: ItemRead | None = Field(description="The item to answer; null once finished")
    theta: float
    se: float
    n_items: int
    stop_reason: str | None
