"""JSON values as every backend gives them back, so what we hash or compare is stable."""

from __future__ import annotations

import json
import math
from enum import StrEnum
from typing import Any


def normalize_json(value: Any) -> Any:
    """Integral floats become ints, non-finite floats strings, and object keys sorted.

    PostgreSQL's jsonb returns 1e16 or 471.0 as integers, reorders keys and refuses NaN and
    infinities; values normalised this way compare equal, and serialise byte for byte the same,
    whether they were just computed or read back from either database.
    """
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {str(key): normalize_json(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [normalize_json(item) for item in value]
    return value


def to_json_value(value: Any) -> Any:
    """Any value as plain, normalised JSON (unknown types as strings, keys as strings)."""
    return normalize_json(json.loads(json.dumps(value, default=str)))


class Unstorable(StrEnum):
    """Why a JSON value cannot be stored: PostgreSQL refuses NUL in text and JSON, and JSON itself
    has no NaN or Infinity."""

    NUL_CHARACTER = "nul_character"
    NON_FINITE_NUMBER = "non_finite_number"


def unstorable_values(value: Any, path: str = "body") -> list[tuple[str, Unstorable]]:
    """(dotted path, reason) of every string or key holding a NUL and every NaN or infinity."""
    found: list[tuple[str, Unstorable]] = []
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        current, where = stack.pop()
        if isinstance(current, str):
            if "\x00" in current:
                found.append((where, Unstorable.NUL_CHARACTER))
        elif isinstance(current, float):
            if not math.isfinite(current):
                found.append((where, Unstorable.NON_FINITE_NUMBER))
        elif isinstance(current, dict):
            for key, item in current.items():
                if isinstance(key, str) and "\x00" in key:
                    found.append((f"{where}.{key!r}", Unstorable.NUL_CHARACTER))
                stack.append((item, f"{where}.{key}"))
        elif isinstance(current, list | tuple):
            stack.extend((item, f"{where}.{index}") for index, item in enumerate(current))
    return sorted(found)


_UNSTORABLE_MESSAGES = {
    Unstorable.NUL_CHARACTER: "NUL characters (\\u0000) cannot be stored",
    Unstorable.NON_FINITE_NUMBER: "NaN and Infinity are not JSON numbers",
}


def unstorable_errors(value: Any, path: str) -> list[dict[str, str]]:
    """`unstorable_values` in the error envelope's `errors` shape (field, message, type)."""
    return [
        {"field": where, "message": _UNSTORABLE_MESSAGES[reason], "type": reason.value}
        for where, reason in unstorable_values(value, path)
    ]
