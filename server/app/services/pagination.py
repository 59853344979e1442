"""Run a SELECT as one page of the list envelope, with whitelisted sorting."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, TypeVarTuple

from sqlalchemy import Integer, Row, Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnElement

from app.core.errors import ValidationFailedError
from app.schemas.common import PageParams, Pagination

RowT = TypeVar("RowT")
ColumnsT = TypeVarTuple("ColumnsT")

Sortable = Mapping[str, ColumnElement[Any] | InstrumentedAttribute[Any]]


def sort_key_of(params: PageParams, sortable: Sortable, default_sort: str) -> str:
    """The requested sort key, which must be one of `sortable`; else 422."""
    sort_key = params.sort or default_sort
    if sort_key not in sortable:
        raise ValidationFailedError(
            f"Cannot sort by '{sort_key}'",
            details={"field": "sort", "allowed": sorted(sortable)},
        )
    return sort_key


@dataclass(frozen=True, slots=True)
class PreparedPage(Generic[RowT]):
    """The page statement of one shape of list request (which filters, which sort), built once
    and run again with new values as bound parameters: building a SELECT and its cache key on
    every request costs more CPU than the database spends on a short page. `page` yields the
    entity and the total before LIMIT; `count` is the total alone, for a page past the end."""

    page: Select[RowT, int]
    count: Select[int]


def prepare_page(
    statement: Select[RowT],
    *,
    sort: ColumnElement[Any] | InstrumentedAttribute[Any],
    descending: bool,
    tie_breaker: ColumnElement[Any] | InstrumentedAttribute[Any],
) -> PreparedPage[RowT]:
    """`statement` (one entity, no DISTINCT, filters as named bound parameters) as a reusable
    page; run it with `run_prepared_page`."""
    page = (
        statement.add_columns(func.count().over().label("total_rows"))
        # The tie breaker keeps pages stable when many rows share the sort value.
        .order_by(sort.desc() if descending else sort.asc(), tie_breaker)
        .offset(bindparam("page_offset", type_=Integer))
        .limit(bindparam("page_limit", type_=Integer))
    )
    count = select(func.count()).select_from(statement.order_by(None).subquery())
    return PreparedPage(page=page, count=count)


async def run_prepared_page(
    session: AsyncSession,
    prepared: PreparedPage[RowT],
    params: PageParams,
    values: Mapping[str, Any],
) -> tuple[list[RowT], Pagination]:
    """One page of `prepared` with its filters' `values`: one statement, as `paginate`."""
    found = (
        await session.execute(
            prepared.page,
            {**values, "page_offset": params.offset, "page_limit": params.per_page},
        )
    ).all()
    total = int(found[0][1]) if found else (await session.scalar(prepared.count, values)) or 0
    rows: list[RowT] = [row[0] for row in found]
    return rows, Pagination.build(page=params.page, per_page=params.per_page, total=total)


async def _page_statement(
    session: AsyncSession,
    statement: Select[*ColumnsT],
    params: PageParams,
    *,
    sortable: Sortable,
    default_sort: str,
    tie_breaker: ColumnElement[Any] | InstrumentedAttribute[Any],
) -> tuple[Select[*ColumnsT], Pagination]:
    column = sortable[sort_key_of(params, sortable, default_sort)]
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
    prepared = prepare_page(
        statement,
        sort=sortable[sort_key_of(params, sortable, default_sort)],
        descending=params.order == "desc",
        tie_breaker=tie_breaker,
    )
    return await run_prepared_page(session, prepared, params, {})


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
