"""Spreadsheet-safe CSV cells (OWASP CSV injection).

A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` as a formula, and a leading tab
or carriage return hides such a start. CSV files meant for spreadsheets prefix these cells with
a single quote, which the spreadsheet shows as text; JSON Lines and Parquet keep exact values.
A number is written as a number: `-12.5` is data, not a formula, and stays as it is; booleans
are `true` and `false`.
"""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def csv_cell(value: Any) -> Any:
    """A value as a spreadsheet-safe CSV cell: text neutralised, numbers and None as they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None or isinstance(value, int | float):
        return value
    return neutralise(str(value))
