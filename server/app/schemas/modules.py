"""The module catalogue as the API publishes it (docs/batteries.md, modules)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.catalogue import Domain, ModuleKind


class ModuleRead(BaseModel):
    id: str = Field(examples=["simple-rt"])
    name: str
    domain: Domain
    kind: ModuleKind
    description: str
    default_config: dict[str, Any] = Field(
        description="The effective configuration of a task configured with `{}`"
    )
    config_schema: dict[str, Any] = Field(
        description="JSON Schema (draft 2020-12) every effective configuration satisfies"
    )
    summary_metrics: list[str]
    chance_accuracy: float | None = Field(
        description="Chance level of `accuracy` under `default_config`; null where there is none"
    )
    scorer: str = Field(
        description="The server scorer that scores this task's trials", examples=["interference"]
    )
    scorer_version: str = Field(examples=["interference/1.0.0"])
    trial_schema: dict[str, Any] = Field(
        description=(
            "JSON Schema (draft 2020-12) of one trial as the scorer reads it: fields, JSON types,"
            " required fields, recognised labels, units"
        )
    )
    trial_example: list[dict[str, Any]] = Field(
        description="Trials that satisfy `trial_schema` and score without flags"
    )
