"""Shapes every endpoint shares: the error envelope and the list envelope."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, BeforeValidator, Field, StringConstraints


class ErrorDetail(BaseModel):
    code: str = Field(examples=["NOT_FOUND"])
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorEnvelope(BaseModel):
    error: ErrorDetail


class Pagination(BaseModel):
    page: int
    per_page: int
    total: int
    total_pages: int
    has_next: bool
    has_prev: bool

    @classmethod
    def build(cls, *, page: int, per_page: int, total: int) -> Pagination:
        total_pages = math.ceil(total / per_page) if total else 0
        return cls(
            page=page,
            per_page=per_page,
            total=total,
            total_pages=total_pages,
            has_next=page < total_pages,
            has_prev=page > 1,
        )

    @classmethod
    def empty(cls, params: PageParams) -> Pagination:
        """The requested page of a list with nothing in it."""
        return cls.build(page=params.page, per_page=params.per_page, total=0)


_NUMBER = re.compile(r"\s*[+-]?\d+(\.\d*)?\s*")


def _iso_8601_only(value: object) -> object:
    # Pydantic would read 0 or "0" as seconds since 1970: a client bug, not a time.
    if isinstance(value, bool | int | float) or (
        isinstance(value, str) and _NUMBER.fullmatch(value)
    ):
        raise ValueError("a date-time is an ISO 8601 string with a UTC offset")
    return value


# Every date-time a client sends: an ISO 8601 string with an offset, nothing else.
IsoDateTime = Annotated[AwareDatetime, BeforeValidator(_iso_8601_only)]

# The largest value of an INTEGER column (PostgreSQL's int4; SQLite's are wider). A number a
# client sends that is compared with such a column must not exceed it: the database would
# refuse the query itself (a 500) where a larger number can only be a mistake (a 422).
DB_INTEGER_MAX = 2**31 - 1

# A version number (of a battery, an item bank, ...) as a client names it.
VersionNumber = Annotated[int, Field(ge=1, le=DB_INTEGER_MAX)]

# A participant or a site as a person names it in a body or a query: its UUID or its code
# (docs/api-conventions.md, identifiers; resolved by app.services.references).
Reference = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]

ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    data: list[ItemT]
    pagination: Pagination


SortOrder = Literal["asc", "desc"]


class PageParams(BaseModel):
    """`?page=&per_page=&sort=&order=`, validated once for every list endpoint."""

    page: int = Field(default=1, ge=1, le=1_000_000)
    per_page: int = Field(default=20, ge=1, le=100)
    sort: str | None = Field(default=None, max_length=64)
    order: SortOrder = "asc"

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page
