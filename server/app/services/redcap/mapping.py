"""A completed session's scores as REDCap field values.

A mapping key is `"<task>.<metric>"`: the task's module id, then the metric's name in the task's
scores (a nested value by further dots, `"n-back.levels.2.d_prime"`). Values are written as REDCap
imports them: text, numbers without exponent, booleans as 1/0. A metric the session lacks, or
whose value is empty, is left out (REDCap then keeps what the field held).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

# REDCap's own rule for variable names.
FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
MAPPING_KEY = re.compile(r"^[A-Za-z0-9_-]+\.[^.\s][^\s]*$")
DECIMALS = 6


def format_value(value: Any) -> str | None:
    """The text REDCap receives for a score, or None when there is nothing to send."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        text = f"{value:.{DECIMALS}f}".rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    if isinstance(value, str):
        return value if value.strip() else None
    return None  # lists and objects have no single field to go to


def _lookup(scores: Mapping[str, Any], metric: str) -> Any:
    if metric in scores:
        return scores[metric]
    current: Any = scores
    for part in metric.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


def mapped_values(payload: Mapping[str, Any], field_mapping: Mapping[str, Any]) -> dict[str, str]:
    """REDCap field -> value for the mapped scores of a `session.completed` payload."""
    scores_by_task: dict[str, Mapping[str, Any]] = {}
    for task in payload.get("tasks") or []:
        if isinstance(task, Mapping) and isinstance(task.get("scores"), Mapping):
            scores_by_task[str(task.get("task"))] = task["scores"]
    values: dict[str, str] = {}
    for key, field in field_mapping.items():
        task, _, metric = str(key).partition(".")
        scores = scores_by_task.get(task)
        if scores is None:
            continue
        value = format_value(_lookup(scores, metric))
        if value is not None:
            values[str(field)] = value
    return values
