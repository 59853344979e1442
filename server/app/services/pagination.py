"""Run a SELECT as one page of the list envelope, with whitelisted sorting."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnElement

from app.core.errors import ValidationFailedError
from app.schemas.common import PageParams, Pagination

RowT = TypeVar("RowT")


async def paginate(
    session: AsyncSession,
    statement: Select[RowT],
    params: PageParams,
    *,
    sortable: Mapping[str, ColumnElement[Any] | InstrumentedAttribute[Any]],
    default_sort: str,
    tie_breaker: ColumnElement[Any] | InstrumentedAttribute[Any],
) -> tuple[Sequence[RowT], Pagination]:
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
    rows: Sequence[RowT] = (await session.scalars(page_statement)).all()
    return rows, Pagination.build(page=params.page, per_page=params.per_page, total=total or 0)
