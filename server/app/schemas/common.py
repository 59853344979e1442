"""Shapes every endpoint shares: the error envelope and the list envelope."""

from __future__ import annotations

import math
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field


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
