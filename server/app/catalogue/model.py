"""Data types of the module catalogue."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from app.catalogue.errors import FieldError

JSONSchema = dict[str, Any]

Check = Callable[[Mapping[str, Any]], list[FieldError]]
"""A cross-field rule: takes an effective configuration, returns the problems it finds.

Checks run on configurations that may also have schema errors, so they must ignore values of the
wrong type rather than fail on them.
"""

ChanceRule = Callable[[Mapping[str, Any]], float | None]
"""Accuracy expected without task-relevant information, for a valid effective configuration."""


class Domain(StrEnum):
    ATTENTION = "attention"
    WORKING_MEMORY = "working_memory"
    PROCESSING_SPEED = "processing_speed"
    EXECUTIVE_FUNCTION = "executive_function"
    EPISODIC_MEMORY = "episodic_memory"
    LANGUAGE = "language"
    SOCIAL_COGNITION = "social_cognition"
    DECISION_MAKING = "decision_making"
    PATIENT_REPORTED_OUTCOME = "patient_reported_outcome"


class ModuleKind(StrEnum):
    COGNITIVE = "cognitive"
    PRO = "pro"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleDefinition:
    """One instrument of the catalogue, as the API publishes it.

    `default_config` is the effective configuration of a task given `{}`; `config_schema` is a
    JSON Schema (draft 2020-12) that every effective configuration satisfies. `chance_accuracy` is
    the chance level of `accuracy` under `default_config` (None where accuracy has no chance
    level); `scorer` names the server scorer that turns the task's trials into `summary_metrics`.
    """

    id: str
    name: str
    domain: Domain
    kind: ModuleKind
    description: str
    default_config: dict[str, Any]
    config_schema: JSONSchema
    summary_metrics: list[str]
    chance_accuracy: float | None
    scorer: str


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """A definition plus the rules that JSON Schema cannot carry (internal to the package)."""

    definition: ModuleDefinition
    checks: tuple[Check, ...]
    chance: ChanceRule
