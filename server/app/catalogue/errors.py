"""Domain errors of the module catalogue.

Plain exceptions, not HTTP errors: the API layer maps `UnknownModuleError` to 404 (or to 422 when
the id comes from a request body) and `TaskConfigError` to 422 with `errors` as details.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict


class FieldError(TypedDict):
    """One problem in a task configuration.

    `field` is a dotted path into the configuration (`timeout_ms`, `levels.1`); the empty string
    means the configuration object itself.
    """

    field: str
    message: str


class CatalogueError(Exception):
    """Base class of the catalogue's errors."""


class UnknownModuleError(CatalogueError, LookupError):
    """No module with this id (or alias) exists in the catalogue."""

    def __init__(self, module_id: str) -> None:
        self.module_id = module_id
        super().__init__(f"unknown module: {module_id!r}")


class TaskConfigError(CatalogueError, ValueError):
    """A task configuration does not satisfy its module's schema or cross-field rules.

    `errors` lists every problem found, not only the first.
    """

    def __init__(self, module_id: str, errors: Sequence[FieldError]) -> None:
        self.module_id = module_id
        self.errors: list[FieldError] = [
            FieldError(field=error["field"], message=error["message"]) for error in errors
        ]
        problems = "; ".join(
            f"{error['field'] or '(config)'}: {error['message']}" for error in self.errors
        )
        super().__init__(f"invalid configuration for module {module_id!r}: {problems}")
