"""Run a SELECT as one page of the list envelope, with whitelisted sorting."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, TypeVarTuple

from sqlalchemy import Row, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnElement

from app.core.errors import ValidationFailedError
from app.schemas.common import PageParams, Pagination

RowT = TypeVar("RowT")
ColumnsT = TypeVarTuple("ColumnsT")

Sortable = Mapping[str, ColumnElement[Any] | InstrumentedAttribute[Any]]


async def _page_statement(
    session: AsyncSession,
    statement: Select[*ColumnsT],
    params: PageParams,
    *,
    sortable: Sortable,
    default_sort: str,
    tie_breaker: ColumnElement[Any] | InstrumentedAttribute[Any],
) -> tuple[Select[*ColumnsT], Pagination]:
    sort_key = params.sort or default_sort
    if sort_key not in sortable:
        raise ValidationFailedError(
            f"Cannot sort by '{sort_key}'",
            details={"field": "sort", "allowed": sorted(sortable)},
        )
    column = sortable[sort_key]
    ordering = column.desc() if params.order == "desc" else column.asc()
    total = await session.scalar(
        select(func.count()).select_from(statement.order_by(None).subquery())
    )
    # The tie breaker keeps pages stable when many rows share the sort value.
    page_statement = (
        statement.order_by(ordering, tie_breaker).offset(params.offset).limit(params.per_page)
    )
    return page_statement, Pagination.build(
        page=params.page, per_page=params.per_page, total=total or 0
    )


async def paginate(
    session: AsyncSession,
    statement: Select[RowT],
    params: PageParams,
    *,
    sortable: Sortable,
    default_sort: str,
    tie_breaker: ColumnElement[Any] | InstrumentedAttribute[Any],
) -> tuple[Sequence[RowT], Pagination]:
    """One page of a single-entity SELECT: the entities themselves.

    One statement: the total comes with the page (`count(*) OVER ()`, computed before LIMIT).
    Only a page past the end, which has no row to carry it, costs a second one (and a DISTINCT
    query, whose window would count rows before DISTINCT removes them, keeps two)."""
    if statement._distinct:
        page_statement, pagination = await _page_statement(
            session,
            statement,
            params,
            sortable=sortable,
            default_sort=default_sort,
            tie_breaker=tie_breaker,
        )
        return (await session.scalars(page_statement)).all(), pagination
    sort_key = params.sort or default_sort
    if sort_key not in sortable:
        raise ValidationFailedError(
            f"Cannot sort by '{sort_key}'",
            details={"field": "sort", "allowed": sorted(sortable)},
        )
    column = sortable[sort_key]
    ordering = column.desc() if params.order == "desc" else column.asc()
    page_statement = (
        statement.add_columns(func.count().over().label("total_rows"))
        .order_by(ordering, tie_breaker)
        .offset(params.offset)
        .limit(params.per_page)
    )
    found = (await session.execute(page_statement)).all()
    if found:
        total = int(found[0]._mapping["total_rows"])
    else:
        total = (
            await session.scalar(
                select(func.count()).select_from(statement.order_by(None).subquery())
            )
            or 0
        )
    rows: list[RowT] = [row[0] for row in found]
    return rows, Pagination.build(page=params.page, per_page=params.per_page, total=total)


async def paginate_rows(
    session: AsyncSession,
    statement: Select[*ColumnsT],
    params: PageParams,
    *,
    sortable: Sortable,
    default_sort: str,
    tie_breaker: ColumnElement[Any] | InstrumentedAttribute[Any],
) -> tuple[Sequence[Row[*ColumnsT]], Pagination]:
    """One page of a SELECT of several entities or columns: whole rows."""
    page_statement, pagination = await _page_statement(
        session,
        statement,
        params,
        sortable=sortable,
        default_sort=default_sort,
        tie_breaker=tie_breaker,
    )
    rows: Sequence[Row[*ColumnsT]] = (await session.execute(page_statement)).all()
    return rows, pagination
