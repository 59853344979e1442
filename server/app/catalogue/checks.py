"""Cross-field rules that JSON Schema cannot express.

A check receives the effective configuration, which may still hold values the schema rejected;
it compares only values of the right type and leaves the rest to the schema's errors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
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


def at_most(field: str, other: str) -> Check:
    """`config[field] <= config[other]`."""

    def check(config: Mapping[str, Any]) -> list[FieldError]:
        value, limit = numeric(config, field), numeric(config, other)
        if value is None or limit is None or value <= limit:
            return []
        message = f"must be less than or equal to {other} ({_show(limit)})"
        return [FieldError(field=field, message=message)]

    return check


def below(field: str, other: str) -> Check:
    """`config[field] < config[other]`."""

    def check(config: Mapping[str, Any]) -> list[FieldError]:
        value, limit = numeric(config, field), numeric(config, other)
        if value is None or limit is None or value < limit:
            return []
        return [FieldError(field=field, message=f"must be less than {other} ({_show(limit)})")]

    return check


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
        message = f"must be less than or equal to {' + '.join(others)} ({_show(limit)})"
        return [FieldError(field=field, message=message)]

    return check


def multiple_of(field: str, other: str) -> Check:
    """`config[field]` is a whole multiple of `config[other]` (balanced blocks)."""

    def check(config: Mapping[str, Any]) -> list[FieldError]:
        value, step = numeric(config, field), numeric(config, other)
        if value is None or step is None or step <= 0 or value % step == 0:
            return []
        message = f"must be a multiple of {other} ({_show(step)})"
        return [FieldError(field=field, message=message)]

    return check
