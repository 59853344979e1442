"""The module catalogue, read-only (docs/batteries.md, modules)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from app.api.dependencies import AnyPrincipal
from app.catalogue import (
    Domain,
    ModuleKind,
    UnknownModuleError,
    get_module,
    list_modules,
)
from app.core.errors import NotFoundError
from app.schemas.common import Page, Pagination, SortOrder
from app.schemas.modules import ModuleRead
from app.services.modules import module_read

router = APIRouter(prefix="/modules", tags=["modules"])

ModuleSort = Literal["id", "name", "domain", "kind"]


@router.get("")
async def list_catalogue(
    _: AnyPrincipal,
    domain: Domain | None = None,
    kind: ModuleKind | None = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 100,
    sort: ModuleSort | None = None,
    order: SortOrder = "asc",
) -> Page[ModuleRead]:
    """Every module in catalogue order (or sorted by `sort`); one page holds the whole catalogue
    by default. An unknown `domain` or `kind` is 422, not an empty list."""
    modules = list_modules(
        domain=domain.value if domain else None, kind=kind.value if kind else None
    )
    if sort is not None:
        modules.sort(key=lambda module: (str(getattr(module, sort)), module.id))
    if order == "desc":
        modules.reverse()
    start = (page - 1) * per_page
    return Page[ModuleRead](
        data=[module_read(module) for module in modules[start : start + per_page]],
        pagination=Pagination.build(page=page, per_page=per_page, total=len(modules)),
    )


@router.get("/{module_id}")
async def get_catalogue_module(module_id: str, _: AnyPrincipal) -> ModuleRead:
    """One module by id or alias (`cpt` is `cpt-go-nogo`)."""
    try:
        return module_read(get_module(module_id))
    except UnknownModuleError:
        raise NotFoundError("Module not found", details={"module_id": module_id}) from None
