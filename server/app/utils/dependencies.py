"""`Annotated` dependencies the routers declare: `SessionDep`, `SettingsDep`, ..."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.session import get_db
from app.schemas.common import PageParams, SortOrder
from app.services.session_store import SessionStore


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session_store(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.session_store
    return store


def get_page_params(
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 20,
    sort: Annotated[str | None, Query(max_length=64)] = None,
    order: Annotated[SortOrder, Query()] = "asc",
) -> PageParams:
    return PageParams(page=page, per_page=per_page, sort=sort, order=order)


# scope="function": commit before the response is sent (see app.db.session.get_db).
SessionDep = Annotated[AsyncSession, Depends(get_db, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionStoreDep = Annotated[SessionStore, Depends(get_session_store)]
PageParamsDep = Annotated[PageParams, Depends(get_page_params)]


def request_id(request: Request) -> str:
    value: str = request.scope.get("state", {}).get("request_id", "")
    return value


RequestIdDep = Annotated[str, Depends(request_id)]
