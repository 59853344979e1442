"""Cross-field rules that JSON Schema cannot express.

A check receives the effective configuration, which may still hold values the schema rejected;
it compares only values of the right type and leaves the rest to the schema's errors.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

from app.catalogue.errors import FieldError
from app.catalogue.model import Check


def numeric(config: Mapping[str, Any], field: str) -> float | None:
    """The finite number stored under `field`, or None when it is missing or not a number."""
    value = config.get(field)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        return None
    return value


def _show(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _violation(field: str, requirement: str, limit: float) -> list[FieldError]:
    return [FieldError(field=field, message=f"must be {requirement} ({_show(limit)})")]


def _relation(
    field: str, other: str, holds: Callable[[float, float], bool], requirement: str
) -> Check:
    """`holds(config[field], config[other])`; otherwise `field` "must be <requirement> <other>"."""

    def check(config: Mapping[str, Any]) -> list[FieldError]:
        value, limit = numeric(config, field), numeric(config, other)
        if value is None or limit is None or holds(value, limit):
            return []
        return _violation(field, f"{requirement} {other}", limit)

    return check


def at_most(field: str, other: str) -> Check:
    """`config[field] <= config[other]`."""
    return _relation(field, other, operator.le, "less than or equal to")


def below(field: str, other: str) -> Check:
    """`config[field] < config[other]`."""
    return _relation(field, other, operator.lt, "less than")


def at_most_sum(field: str, *others: str) -> Check:
    """`config[field] <= sum(config[o] for o in others)`, e.g. a response window that must end
    before the next stimulus appears."""

    def check(config: Mapping[str, Any]) -> list[FieldError]:
        value = numeric(config, field)
        parts = [numeric(config, other) for other in others]
        if value is None or any(part is None for part in parts):
            return []
        limit = sum(part for part in parts if part is not None)
        if value <= limit:
            return []
        return _violation(field, f"less than or equal to {' + '.join(others)}", limit)

    return check


def multiple_of(field: str, other: str) -> Check:
    """`config[field]` is a whole multiple of `config[other]` (balanced blocks)."""
    return _relation(
        field, other, lambda value, step: step <= 0 or value % step == 0, "a multiple of"
    )
