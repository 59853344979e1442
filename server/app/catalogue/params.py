"""Builders of JSON Schema fragments for task parameters.

Every parameter carries its type, bounds, a default and a description, so the schema alone is
enough for a portal to render a form. Names carry their unit (`_ms`, `_days`).

Timing vocabulary used across the catalogue:
- `stimulus_duration_ms`: how long a stimulus stays on screen.
- `isi_ms`: blank interval between the end of one stimulus (or the response, for stimuli that
  stay until a response) and the onset of the next.
- `timeout_ms`: response window measured from stimulus onset; no response within it is recorded
  as a trial without response (`rt` null).
- `practice_trials`: unscored trials with feedback before the scored ones (0 = no practice).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from app.catalogue.model import JSONSchema

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def integer(default: int, *, minimum: int, maximum: int, description: str) -> JSONSchema:
    return {
        "type": "integer",
        "minimum": minimum,
        "maximum": maximum,
        "default": default,
        "description": description,
    }


def number(
    default: float,
    *,
    description: str,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: float | None = None,
    exclusive_maximum: float | None = None,
) -> JSONSchema:
    schema: JSONSchema = {"type": "number"}
    if minimum is not None:
        schema["minimum"] = minimum
    if exclusive_minimum is not None:
        schema["exclusiveMinimum"] = exclusive_minimum
    if maximum is not None:
        schema["maximum"] = maximum
    if exclusive_maximum is not None:
        schema["exclusiveMaximum"] = exclusive_maximum
    schema["default"] = default
    schema["description"] = description
    return schema


def proportion(default: float, *, description: str, low: float, high: float) -> JSONSchema:
    """A probability bounded away from 0 and 1 (a task needs both kinds of trial)."""
    return number(default, minimum=low, maximum=high, description=description)


def boolean(default: bool, *, description: str) -> JSONSchema:
    return {"type": "boolean", "default": default, "description": description}


def choice(default: str, options: Sequence[str], *, description: str) -> JSONSchema:
    if default not in options:
        raise ValueError(f"default {default!r} is not one of {list(options)!r}")
    return {"type": "string", "enum": list(options), "default": default, "description": description}


def fixed_integer(value: int, *, description: str) -> JSONSchema:
    """A property of the validated instrument that a study cannot change (declared for clients)."""
    return {"type": "integer", "const": value, "default": value, "description": description}


def integer_list(
    default: Sequence[int],
    *,
    item_minimum: int,
    item_maximum: int,
    min_items: int,
    max_items: int,
    unique: bool = True,
    description: str,
) -> JSONSchema:
    """An array of integers (distinct unless `unique=False`), in order of administration."""
    return {
        "type": "array",
        "items": {"type": "integer", "minimum": item_minimum, "maximum": item_maximum},
        "minItems": min_items,
        "maxItems": max_items,
        "uniqueItems": unique,
        "default": list(default),
        "description": description,
    }


def choice_list(
    default: Sequence[str], options: Sequence[str], *, min_items: int, description: str
) -> JSONSchema:
    """An array of distinct values drawn from `options`."""
    return {
        "type": "array",
        "items": {"type": "string", "enum": list(options)},
        "minItems": min_items,
        "maxItems": len(options),
        "uniqueItems": True,
        "default": list(default),
        "description": description,
    }


# Parameters shared by many tasks, with one wording everywhere.


def practice_trials(default: int, *, maximum: int = 20, description: str = "") -> JSONSchema:
    return integer(
        default,
        minimum=0,
        maximum=maximum,
        description=description
        or "Unscored practice trials with feedback before the scored trials (0 = none).",
    )


def n_trials(default: int, *, minimum: int, maximum: int, description: str = "") -> JSONSchema:
    return integer(
        default,
        minimum=minimum,
        maximum=maximum,
        description=description or "Number of scored trials.",
    )


def timeout_ms(default: int, *, minimum: int, maximum: int, description: str = "") -> JSONSchema:
    return integer(
        default,
        minimum=minimum,
        maximum=maximum,
        description=description
        or "Response window from stimulus onset, in ms; no response within it is a timeout.",
    )


def stimulus_duration_ms(
    default: int, *, minimum: int = 50, maximum: int = 10_000, description: str = ""
) -> JSONSchema:
    return integer(
        default,
        minimum=minimum,
        maximum=maximum,
        description=description or "Time each stimulus stays on screen, in ms.",
    )


def isi_ms(default: int, *, minimum: int = 0, maximum: int = 10_000) -> JSONSchema:
    return integer(
        default,
        minimum=minimum,
        maximum=maximum,
        description="Blank interval between the end of one stimulus and the next, in ms.",
    )


def config_schema(module_id: str, name: str, properties: Mapping[str, JSONSchema]) -> JSONSchema:
    """The closed object schema of a module's configuration."""
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"urn:metricis:module:{module_id}:config",
        "title": f"{name}: configuration",
        "type": "object",
        "additionalProperties": False,
        "properties": dict(properties),
    }
