"""Checking a bank's content: items from JSON or CSV, and the CAT rules (docs/item-banks.md).

Every problem is collected, not only the first, and named: `items.<index>.<field>` for JSON,
`rows.<line>.<column>` for CSV (line 1 is the header), `rules.<field>` for the rules.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from app.catalogue import FieldError
from app.scoring.irt import CatRules, IrtError, Item, check_parameters

MAX_ITEMS: Final = 2000
MAX_CATEGORIES: Final = 20
MAX_TEXT: Final = 4000
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_ITEM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_RULE_FIELDS: Final = ("target_se", "min_items", "max_items", "randomesque", "domain_targets")
DEFAULT_RULES: Final[dict[str, Any]] = {
    "target_se": 0.3,
    "min_items": 1,
    "max_items": 20,
    "randomesque": 1,
    "domain_targets": {},
}


@dataclass
class _Errors:
    found: list[FieldError]

    def add(self, field: str, message: str) -> None:
        self.found.append(FieldError(field=field, message=message))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _texts(raw: Any, field: str, errors: _Errors, *, required: bool) -> dict[str, str]:
    if raw is None:
        if required:
            errors.add(field, "Each item needs its text in at least one language")
        return {}
    if not isinstance(raw, Mapping) or (required and not raw):
        errors.add(field, "Must be an object of language code to text, with at least one")
        return {}
    texts: dict[str, str] = {}
    for language, text in raw.items():
        if not isinstance(language, str) or not _LANGUAGE.match(language):
            errors.add(f"{field}.{language}", "Not a language code (e.g. en, fr, pt-BR)")
        elif not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            errors.add(f"{field}.{language}", f"Must be a non-empty text of at most {MAX_TEXT}")
        else:
            texts[language] = text.strip()
    return texts


def _options(raw: Any, field: str, n_categories: int, errors: _Errors) -> dict[str, list[str]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        errors.add(field, "Must be an object of language code to a list of option labels")
        return {}
    options: dict[str, list[str]] = {}
    for language, labels in raw.items():
        name = f"{field}.{language}"
        if not isinstance(language, str) or not _LANGUAGE.match(language):
            errors.add(name, "Not a language code (e.g. en, fr, pt-BR)")
        elif not isinstance(labels, list) or not all(
            isinstance(label, str) and label.strip() for label in labels
        ):
            errors.add(name, "Must be a list of non-empty labels")
        elif len(labels) != n_categories:
            errors.add(name, f"Has {len(labels)} labels; the item's thresholds give {n_categories}")
        else:
            options[language] = [label.strip() for label in labels]
    return options


def check_item(raw: Any, prefix: str, errors: _Errors, seen: dict[str, str]) -> dict[str, Any]:
    """One item as stored, or {} after adding its problems to `errors`."""
    if not isinstance(raw, Mapping):
        errors.add(prefix, "Each item must be an object")
        return {}
    before = len(errors.found)
    item_id = raw.get("id")
    if not isinstance(item_id, str) or not _ITEM_ID.match(item_id):
        errors.add(f"{prefix}.id", "Required: letters, digits, '_', '.', ':' or '-', at most 64")
        item_id = None
    elif item_id in seen:
        errors.add(f"{prefix}.id", f"Item id '{item_id}' is already used by {seen[item_id]}")
    else:
        seen[item_id] = prefix
    a = _number(raw.get("a"))
    if a is None or a <= 0:
        errors.add(f"{prefix}.a", "The discrimination must be a number greater than 0")
    raw_b = raw.get("b")
    thresholds: list[float] = []
    single = _number(raw_b)
    if single is not None:
        thresholds = [single]
    elif isinstance(raw_b, list) and raw_b:
        for index, value in enumerate(raw_b):
            number = _number(value)
            if number is None:
                errors.add(f"{prefix}.b[{index}]", "Thresholds must be finite numbers")
            thresholds.append(number if number is not None else math.nan)
        if len(raw_b) > MAX_CATEGORIES - 1:
            errors.add(f"{prefix}.b", f"At most {MAX_CATEGORIES - 1} thresholds")
    else:
        errors.add(f"{prefix}.b", "A number (2PL) or a list of ordered thresholds (GRM)")
    if thresholds and all(math.isfinite(b) for b in thresholds):
        for index in range(1, len(thresholds)):
            if thresholds[index] <= thresholds[index - 1]:
                errors.add(f"{prefix}.b[{index}]", "Thresholds must be strictly increasing")
    domain = raw.get("domain")
    if domain is not None and (not isinstance(domain, str) or not domain.strip()):
        errors.add(f"{prefix}.domain", "A non-empty text, or absent")
    texts = _texts(raw.get("text"), f"{prefix}.text", errors, required=True)
    options = _options(raw.get("options"), f"{prefix}.options", len(thresholds) + 1, errors)
    unknown = sorted(set(raw) - {"id", "a", "b", "domain", "text", "options"})
    for key in unknown:
        errors.add(f"{prefix}.{key}", "Unknown field")
    if len(errors.found) > before or a is None:
        return {}
    try:
        check_parameters(a, thresholds)
    except IrtError as exc:  # already reported above in the bank's own terms
        errors.add(prefix, str(exc))
        return {}
    return {
        "id": item_id,
        "a": a,
        "b": thresholds,
        "domain": domain.strip() if isinstance(domain, str) else None,
        "text": texts,
        "options": options,
    }


def check_items(raw_items: Any, errors: list[FieldError]) -> list[dict[str, Any]]:
    collected = _Errors(errors)
    if not isinstance(raw_items, list) or not raw_items:
        collected.add("items", "A bank needs at least one item")
        return []
    if len(raw_items) > MAX_ITEMS:
        collected.add("items", f"A bank has at most {MAX_ITEMS} items")
        return []
    seen: dict[str, str] = {}
    return [
        check_item(raw, f"items.{index}", collected, seen) for index, raw in enumerate(raw_items)
    ]


def check_rules(raw: Any, errors: list[FieldError]) -> dict[str, Any]:
    """The rules as stored (defaults filled in)."""
    if raw is None:
        return dict(DEFAULT_RULES)
    if not isinstance(raw, Mapping):
        errors.append(FieldError(field="rules", message="Must be an object"))
        return dict(DEFAULT_RULES)
    rules = dict(DEFAULT_RULES)
    before = len(errors)
    for key, value in raw.items():
        if key not in _RULE_FIELDS:
            errors.append(FieldError(field=f"rules.{key}", message="Unknown rule"))
        elif key == "target_se":
            number = _number(value)
            if number is None or number <= 0:
                errors.append(FieldError(field="rules.target_se", message="A number above 0"))
            else:
                rules[key] = number
        elif key == "domain_targets":
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and (n := _number(v)) is not None and n >= 0
                for k, v in value.items()
            ):
                errors.append(
                    FieldError(field="rules.domain_targets", message="Domain to a share >= 0")
                )
            else:
                rules[key] = {k: float(v) for k, v in value.items()}
        elif isinstance(value, bool) or not isinstance(value, int):
            errors.append(FieldError(field=f"rules.{key}", message="An integer"))
        else:
            rules[key] = value
    if len(errors) == before:
        try:
            cat_rules(rules)
        except IrtError as exc:
            field, _, message = str(exc).partition(": ")
            errors.append(FieldError(field=f"rules.{field}", message=message))
    return rules


def cat_rules(rules: Mapping[str, Any]) -> CatRules:
    return CatRules(
        target_se=float(rules["target_se"]),
        min_items=int(rules["min_items"]),
        max_items=int(rules["max_items"]),
        randomesque=int(rules["randomesque"]),
        domain_targets=dict(rules["domain_targets"]),
    )


def irt_items(items: Sequence[Mapping[str, Any]]) -> list[Item]:
    return [
        Item(id=item["id"], a=item["a"], thresholds=tuple(item["b"]), domain=item["domain"])
        for item in items
    ]


def _csv_cell_number(value: str) -> float | str:
    try:
        number = float(value)
    except ValueError:
        return value
    return number if math.isfinite(number) else value


def items_from_csv(text: str, errors: list[FieldError]) -> list[dict[str, Any]]:
    """Items from a CSV: `id`, `a`, `b` or `b1`..`bK`, optional `domain`, `text_<lang>` and
    `options_<lang>` (labels separated by `|`). Errors are named `rows.<line>.<column>`."""
    collected = _Errors(errors)
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    names = [name.strip() for name in header]
    if "id" not in names or "a" not in names:
        collected.add("rows.1", "The header needs the columns id, a and b (or b1, b2, ...)")
        return []
    threshold_columns = sorted(
        (name for name in names if re.fullmatch(r"b[1-9][0-9]?", name)),
        key=lambda name: int(name[1:]),
    )
    if "b" in names and threshold_columns:
        collected.add("rows.1", "Use either a column b or columns b1, b2, ...; not both")
        return []
    if "b" not in names and not threshold_columns:
        collected.add("rows.1", "The header needs a column b (2PL) or b1, b2, ... (GRM)")
        return []
    items: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for line, row in enumerate(reader, start=2):
        if len(items) >= MAX_ITEMS:
            collected.add(f"rows.{line}", f"A bank has at most {MAX_ITEMS} items")
            break
        cells = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if not any(cells.values()):
            continue
        raw: dict[str, Any] = {"id": cells.get("id", "")}
        raw["a"] = _csv_cell_number(cells.get("a", ""))
        if "b" in names:
            raw["b"] = _csv_cell_number(cells.get("b", ""))
        else:
            # Trailing empty threshold cells are an item with fewer categories.
            values = [cells.get(name, "") for name in threshold_columns]
            while values and values[-1] == "":
                values.pop()
            raw["b"] = [_csv_cell_number(value) for value in values]
        if cells.get("domain"):
            raw["domain"] = cells["domain"]
        texts = {k[5:]: v for k, v in cells.items() if k.startswith("text_") and v}
        raw["text"] = texts or None
        options = {k[8:]: v.split("|") for k, v in cells.items() if k.startswith("options_") and v}
        if options:
            raw["options"] = options
        item_errors = _Errors([])
        item = check_item(raw, "item", item_errors, seen)
        for error in item_errors.found:
            column = _csv_column(error["field"], threshold_columns)
            collected.add(f"rows.{line}.{column}" if column else f"rows.{line}", error["message"])
        if seen.get(raw["id"]) == "item":
            seen[raw["id"]] = f"row {line}"
        if item:
            items.append(item)
    if not items and not errors:
        collected.add("rows", "The file has no items")
    return items


def _csv_column(field: str, threshold_columns: Sequence[str]) -> str:
    """`item.b[2]` -> `b3` (or `b`), `item.text.en` -> `text_en`, `item.a` -> `a`."""
    rest = field.removeprefix("item").removeprefix(".")
    match = re.fullmatch(r"b\[(\d+)\]", rest)
    if match:
        index = int(match.group(1))
        return threshold_columns[index] if index < len(threshold_columns) else "b"
    if rest.startswith("text."):
        return "text_" + rest[5:]
    if rest.startswith("options."):
        return "options_" + rest[8:]
    return rest
