"""The expressions that PostgreSQL and SQLite spell differently, and portable percentiles."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Float, FromClause, Select, and_, case, cast, func, select
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.functions import FunctionElement

Column = ColumnElement[Any] | InstrumentedAttribute[Any]


def seconds_between(later: Column, earlier: Column, dialect: str) -> ColumnElement[float]:
    """`later - earlier` in seconds, as a float (SQLite: from Julian days, millisecond-exact)."""
    if dialect == "postgresql":
        return cast(func.extract("epoch", later - earlier), Float)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def array_elements(json_array: Column, dialect: str) -> FromClause:
    """One row per element of a JSON array column (a lateral function in the FROM clause), with
    the element in its column `value`."""
    function: FunctionElement[Any] = (
        func.jsonb_array_elements(json_array)
        if dialect == "postgresql"
        else func.json_each(json_array)
    )
    return function.table_valued("value", joins_implicitly=True).alias("element")


def member_text(element: ColumnElement[Any], key: str, dialect: str) -> ColumnElement[str]:
    """The text of `element[key]` for a JSON object element."""
    if dialect == "postgresql":
        return element.op("->>")(key)
    return func.json_extract(element, f"$.{key}")


def nearest_rank_percentiles(
    values: Select[*tuple[Any, ...]], percents: tuple[int, ...]
) -> Select[*tuple[Any, ...]]:
    """One row: the number of rows of `values` (which selects one column), the number of
    non-null values, each percentile of those (nearest rank: the value at rank ceil(p/100 * n)
    in ascending order), then the largest. Window functions, which both databases have, sort
    the values once in the database; nulls are ranked after every value and never picked."""
    inner = values.subquery("measured")
    value = inner.c[0]
    ranked = select(
        value.label("value"),
        func.row_number().over(order_by=(value.is_(None), value)).label("rank"),
        func.count(value).over().label("n"),
    ).subquery("ranked")
    picks = [
        func.max(
            case(
                (
                    and_(
                        ranked.c.value.is_not(None),
                        ranked.c.rank == (ranked.c.n * percent + 99) // 100,
                    ),
                    ranked.c.value,
                )
            )
        )
        for percent in percents
    ]
    return select(
        func.count(), func.count(ranked.c.value), *picks, func.max(ranked.c.value)
    ).select_from(ranked)
