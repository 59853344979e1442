"""Chance levels of `accuracy`, derived from a valid effective configuration.

The scorer flags `ACCURACY_AT_CHANCE` when a session's accuracy is at or below this level, so the
level is the accuracy of a participant who ignores the task-relevant information:
- forced choice among k equiprobable alternatives: 1/k;
- detection tasks where the correct response is "respond" on targets and "withhold" otherwise:
  the accuracy of always giving the more frequent response, max(p, 1 - p) for target rate p
  (never responding scores 1 - p, so a non-engaged participant is flagged);
- no chance level (None) where accuracy is not a choice among alternatives (reaction time only,
  serial recall, questionnaires).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.catalogue.model import ChanceRule


def no_chance_level(config: Mapping[str, Any]) -> None:
    del config
    return None


def fixed(level: float) -> ChanceRule:
    def rule(config: Mapping[str, Any]) -> float:
        del config
        return level

    return rule


def one_in(field: str) -> ChanceRule:
    """Forced choice among `config[field]` alternatives."""

    def rule(config: Mapping[str, Any]) -> float:
        return 1.0 / int(config[field])

    return rule


def majority_response(target_rate_field: str) -> ChanceRule:
    """Go/no-go detection with target rate `config[target_rate_field]`."""

    def rule(config: Mapping[str, Any]) -> float:
        rate = float(config[target_rate_field])
        return max(rate, 1.0 - rate)

    return rule
