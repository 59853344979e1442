"""JSON values as every backend gives them back, so what we hash or compare is stable."""

from __future__ import annotations

import json
import math
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
