"""The trials a scorer reads: one declaration for the published format and the data checks.

Each scorer declares the trial fields it reads as a `TrialFormat`. From that one declaration come

- the JSON Schema (draft 2020-12) of one trial that `GET /api/modules/{id}` publishes, with an
  example trial list that scores without flags;
- the JSON types the submit endpoint enforces on a task's numeric fields (`type_errors`);
- the data-quality checks behind the MISSING_FIELD and UNRECOGNISED_CONDITION flags
  (`field_reports`), which read each value with the scorer's own reader,

so the published format, the scorer and its flags cannot drift apart: scorers read label fields
through the field's own `read`. The schema lists each label in one spelling; the scorers accept
it in any case, with or without spaces, `-` and `_`.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from types import MappingProxyType
from typing import Any, Final, Generic, TypeVar

from app.scoring.common import TARGET_LABELS, Trial, as_flag, as_label, as_number

JSONSchema = dict[str, Any]
ValueT = TypeVar("ValueT")
ValueReader = Callable[[object], ValueT | None]
"""A scorer's reading of one field's value: None where the scorer cannot use it."""

SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
TASK_NAME_PATTERN: Final = r"^[A-Za-z0-9._-]+$"
TASK_NAME_MAX_LENGTH: Final = 64
TRIAL_INDEX_MAX: Final = 1_000_000
# Bounds that no real reaction or completion time crosses; anything beyond is a client bug.
RT_MIN_MS: Final = -60_000.0
RT_MAX_MS: Final = 3_600_000.0
_NUMERIC_TYPES: Final = frozenset({"number", "integer"})


@dataclass(frozen=True, slots=True, kw_only=True)
class TrialField(Generic[ValueT]):
    name: str
    schema: JSONSchema
    """The property's JSON Schema: type, bounds, labels, unit in the description."""
    read: ValueReader[ValueT]
    required: bool = False
    """Whether the scorer's metrics need the field on every scored trial."""
    labels: tuple[str, ...] = ()
    """The labels the scorer recognises, as published, for a label field."""

    @property
    def json_type(self) -> str:
        json_type = self.schema["type"]
        return json_type if isinstance(json_type, str) else json_type[0]


@dataclass(frozen=True, slots=True)
class FieldReport:
    """How one field fared over a task's scored trials."""

    field: TrialField[Any]
    missing: int
    """Trials where the field is absent or null, or (other than a label) holds a value the
    scorer cannot use, such as an n-back level above 9."""
    unrecognised: Counter[str]
    """Values of a label field the scorer does not recognise, by their text, with counts."""


@dataclass(frozen=True, slots=True)
class FieldTypeError:
    field: str
    json_type: str


def _schema(json_type: str | list[str], description: str, **keywords: Any) -> JSONSchema:
    return {"type": json_type, **keywords, "description": description}


def label_field(name: str, labels: Sequence[str], *, description: str) -> TrialField[str]:
    """A required string naming a condition. The schema lists `labels` as written here; `read`
    gives a recognised value in its `as_label` form (`"A"` is read as `"a"`)."""
    recognised = frozenset(label for label in map(as_label, labels) if label is not None)

    def read(value: object) -> str | None:
        label = as_label(value)
        return label if label in recognised else None

    return TrialField(
        name=name,
        schema=_schema("string", description, enum=list(labels)),
        read=read,
        required=True,
        labels=tuple(labels),
    )


def boolean_field(
    name: str, *, description: str, required: bool = False, default: bool | None = None
) -> TrialField[bool]:
    keywords = {} if default is None else {"default": default}
    return TrialField(
        name=name,
        schema=_schema("boolean", description, **keywords),
        read=as_flag,
        required=required,
    )


def correct_field(*, required: bool) -> TrialField[bool]:
    return boolean_field(
        "correct", description="Whether the response was right.", required=required
    )


def target_condition_field() -> TrialField[str]:
    return label_field(
        "condition",
        TARGET_LABELS,
        description=(
            "`target` (respond; `go` means the same) or `nontarget` (withhold; `nogo` means the"
            " same)."
        ),
    )


def count_field(
    name: str,
    *,
    description: str,
    read: ValueReader[int],
    minimum: int = 0,
    maximum: int | None = None,
    required: bool = True,
) -> TrialField[int]:
    """A whole number; `read` is the scorer's own reader, bounds included."""
    bounds: dict[str, int] = {"minimum": minimum}
    if maximum is not None:
        bounds["maximum"] = maximum
    return TrialField(
        name=name,
        schema=_schema("integer", description, **bounds),
        read=read,
        required=required,
    )


def number_field(
    name: str, *, description: str, read: ValueReader[float] = as_number, required: bool = False
) -> TrialField[float]:
    return TrialField(
        name=name, schema=_schema("number", description), read=read, required=required
    )


def rt_field(
    *,
    description: str = (
        "Reaction time from stimulus onset, in ms; null or absent when there was no response."
    ),
    read: ValueReader[float] = as_number,
    required: bool = False,
) -> TrialField[float]:
    json_type: str | list[str] = "number" if required else ["number", "null"]
    return TrialField(
        name="rt",
        schema=_schema(json_type, description, minimum=RT_MIN_MS, maximum=RT_MAX_MS),
        read=read,
        required=required,
    )


_ENVELOPE_PROPERTIES: Final[Mapping[str, JSONSchema]] = MappingProxyType(
    {
        "task": _schema(
            "string",
            "The module id (or an alias such as `cpt`); a submission's trials are grouped by it.",
            minLength=1,
            maxLength=TASK_NAME_MAX_LENGTH,
            pattern=TASK_NAME_PATTERN,
        ),
        "trial_index": _schema(
            "integer",
            "Position of the trial in the task, from 0.",
            minimum=0,
            maximum=TRIAL_INDEX_MAX,
        ),
        "is_practice": _schema(
            "boolean", "Practice trials are stored but not scored.", default=False
        ),
        "rt": rt_field().schema,
    }
)
"""Properties of every trial; a scorer's field of the same name replaces the one here."""
_ENVELOPE_REQUIRED: Final = ("task", "trial_index")


@dataclass(frozen=True, slots=True)
class TrialFormat:
    """The fields a scorer reads and an example of its trials."""

    description: str
    fields: tuple[TrialField[Any], ...]
    example: tuple[Mapping[str, Any], ...]
    """Trials without `task` and `trial_index`, which `example_trials` adds."""
    _numeric_types: tuple[tuple[str, str], ...] = dataclass_field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # Computed once: the submit endpoint checks them on every trial.
        numeric = tuple(
            (field.name, field.json_type)
            for field in self.fields
            if field.json_type in _NUMERIC_TYPES
        )
        object.__setattr__(self, "_numeric_types", numeric)

    def json_schema(self, task: str) -> JSONSchema:
        properties = {**_ENVELOPE_PROPERTIES, **{field.name: field.schema for field in self.fields}}
        required = [*_ENVELOPE_REQUIRED, *(field.name for field in self.fields if field.required)]
        return {
            "$schema": SCHEMA_DIALECT,
            "$id": f"urn:metricis:module:{task}:trial",
            "title": f"{task}: one trial",
            "description": self.description,
            "type": "object",
            "properties": copy.deepcopy(properties),
            "required": required,
        }

    def example_trials(self, task: str) -> list[dict[str, Any]]:
        return [
            {"task": task, "trial_index": index, **copy.deepcopy(dict(trial))}
            for index, trial in enumerate(self.example)
        ]

    @property
    def has_numeric_fields(self) -> bool:
        """Whether the scorer reads fields typed `number` or `integer` (the envelope's `rt` and
        `trial_index` are typed by the submit model itself)."""
        return bool(self._numeric_types)

    def type_errors(self, trial: Mapping[str, object]) -> list[FieldTypeError]:
        """Numeric fields of one trial holding something else than their JSON type: a numeric
        string, a boolean, ...; null and absent values are left to the scorer."""
        return [
            FieldTypeError(field=name, json_type=json_type)
            for name, json_type in self._numeric_types
            if (value := trial.get(name)) is not None and not _is_json_type(value, json_type)
        ]

    def field_reports(self, scored: Sequence[Trial]) -> list[FieldReport]:
        """For each field the scorer needs, the scored trials it cannot use, in field order."""
        reports = []
        for field in self.fields:
            if not field.required:
                continue
            missing = 0
            unrecognised: Counter[str] = Counter()
            for trial in scored:
                value = trial.get(field.name)
                if field.read(value) is not None:
                    continue
                if field.labels and value is not None:
                    unrecognised[_label_text(value)] += 1
                else:
                    missing += 1
            reports.append(FieldReport(field=field, missing=missing, unrecognised=unrecognised))
        return reports


def _is_json_type(value: object, json_type: str) -> bool:
    """JSON Schema's `number` and `integer` (2.0 is an integer); a boolean is neither, and NaN
    and ±inf, which JSON cannot carry, are not numbers."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if not isinstance(value, float) or not math.isfinite(value):
        return False
    return json_type == "number" or value.is_integer()


_MAX_LABEL_TEXT: Final = 64


def _label_text(value: object) -> str:
    # Evidence names what was sent, bounded; a non-string is named by its JSON type only.
    if isinstance(value, str):
        return value[:_MAX_LABEL_TEXT]
    if isinstance(value, bool):
        return "<boolean>"
    if isinstance(value, int | float):
        return "<number>"
    if isinstance(value, Mapping):
        return "<object>"
    return "<array>" if isinstance(value, list | tuple) else "<other>"
