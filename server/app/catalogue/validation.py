"""Validation of task configurations against their module's schema and cross-field rules."""

from __future__ import annotations

import copy
import difflib
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from jsonschema import ValidationError

from app.catalogue.errors import FieldError, TaskConfigError
from app.catalogue.model import JSONSchema
from app.catalogue.registry import entry_for, validator_for

_TYPE_NAMES = {
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "string": "a string",
    "array": "an array",
    "object": "an object",
    "null": "null",
}


def validate_task_config(module_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The effective configuration of a task: the module's defaults with `config` laid over them.

    Top-level keys of `config` replace the defaults (an array is replaced whole, not merged).
    Integral floats given for integer parameters come back as ints, keys in schema order. Raises
    `UnknownModuleError` for an unknown module and `TaskConfigError` listing every problem found.
    """
    entry = entry_for(module_id)
    if not isinstance(config, Mapping):
        raise TaskConfigError(module_id, [FieldError(field="", message="must be an object")])

    effective = copy.deepcopy(entry.definition.default_config)
    for key, value in config.items():
        effective[str(key)] = copy.deepcopy(value)

    properties: dict[str, JSONSchema] = entry.definition.config_schema["properties"]
    errors = _schema_errors(validator_for(module_id).iter_errors(effective), properties)
    errors += [error for check in entry.checks for error in check(effective)]
    errors = _with_non_finite_numbers(errors, effective)
    if errors:
        raise TaskConfigError(module_id, _ordered(errors, list(properties)))
    return {key: _normalised(effective[key], properties[key]) for key in properties}


def chance_accuracy_for(module_id: str, config: Mapping[str, Any]) -> float | None:
    """Chance level of `accuracy` for a task run with `config` (None where there is none).

    Differs from `ModuleDefinition.chance_accuracy` where it depends on the configuration, e.g.
    choice-rt with four squares instead of three.
    """
    return entry_for(module_id).chance(validate_task_config(module_id, config))


def _path(parts: Iterable[object]) -> str:
    return ".".join(str(part) for part in parts)


def _schema_errors(
    found: Iterable[ValidationError], properties: Mapping[str, JSONSchema]
) -> list[FieldError]:
    errors: list[FieldError] = []
    mistyped: set[str] = set()
    rest: list[ValidationError] = []
    for error in found:
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            for key in error.instance:
                if key not in properties:
                    field = _path([*error.absolute_path, key])
                    errors.append(FieldError(field=field, message=_unknown(key, properties)))
        elif error.validator == "type":
            mistyped.add(_path(error.absolute_path))
            errors.append(FieldError(field=_path(error.absolute_path), message=_message(error)))
        else:
            rest.append(error)
    # A value of the wrong type also fails `enum` or `const`; its type error says enough.
    errors += [
        FieldError(field=_path(error.absolute_path), message=_message(error))
        for error in rest
        if _path(error.absolute_path) not in mistyped
    ]
    return errors


def _unknown(key: str, properties: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(properties), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown parameter{hint}"


def _message(error: ValidationError) -> str:
    value: Any = error.validator_value
    match error.validator:
        case "type":
            expected = [value] if isinstance(value, str) else list(value)
            return "must be " + " or ".join(_TYPE_NAMES.get(name, name) for name in expected)
        case "minimum":
            return f"must be greater than or equal to {value}"
        case "maximum":
            return f"must be less than or equal to {value}"
        case "exclusiveMinimum":
            return f"must be greater than {value}"
        case "exclusiveMaximum":
            return f"must be less than {value}"
        case "enum":
            return "must be one of: " + ", ".join(json.dumps(option) for option in value)
        case "const":
            return f"must be {json.dumps(value)}"
        case "minItems":
            return f"must have at least {value} item{'s' if value != 1 else ''}"
        case "maxItems":
            return f"must have at most {value} item{'s' if value != 1 else ''}"
        case "uniqueItems":
            return "must not contain duplicates"
        case _:
            return error.message


def _non_finite(value: Any, path: tuple[str, ...]) -> Iterator[str]:
    if isinstance(value, float) and not math.isfinite(value):
        yield _path(path)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _non_finite(item, (*path, str(key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _non_finite(item, (*path, str(index)))


def _with_non_finite_numbers(
    errors: list[FieldError], config: Mapping[str, Any]
) -> list[FieldError]:
    # NaN passes every numeric bound in JSON Schema; such a field gets this one error instead.
    fields = set(_non_finite(config, ()))
    if not fields:
        return errors
    kept = [error for error in errors if error["field"] not in fields]
    return kept + [FieldError(field=field, message="must be a finite number") for field in fields]


def _ordered(errors: list[FieldError], parameter_order: list[str]) -> list[FieldError]:
    """Unique errors, in the order of the parameters they concern (unknown ones last)."""
    position = {name: index for index, name in enumerate(parameter_order)}
    unique = {(error["field"], error["message"]): error for error in errors}.values()

    def key(error: FieldError) -> tuple[int, str, str]:
        top = error["field"].split(".", 1)[0]
        return (position.get(top, len(position)), error["field"], error["message"])

    return sorted(unique, key=key)


def _normalised(value: Any, schema: JSONSchema) -> Any:
    if schema.get("type") == "integer" and isinstance(value, float):
        return int(value)
    if schema.get("type") == "array" and isinstance(value, list) and "items" in schema:
        return [_normalised(item, schema["items"]) for item in value]
    return value
