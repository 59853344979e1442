"""Module catalogue: the 36 instruments Metricis knows, defined in code (docs/catalogue.md).

Pure: no I/O, no web framework, no database. Each module carries its JSON Schema (draft 2020-12)
and defaults; `validate_task_config` checks a battery task's configuration against them and the
module's cross-field rules and returns the effective configuration.
"""

from app.catalogue.errors import CatalogueError, FieldError, TaskConfigError, UnknownModuleError
from app.catalogue.model import Domain, ModuleDefinition, ModuleKind
from app.catalogue.registry import (
    MODULE_ALIASES,
    MODULE_IDS,
    get_module,
    list_modules,
    resolve_module_id,
)
from app.catalogue.validation import chance_accuracy_for, validate_task_config

__all__ = [
    "MODULE_ALIASES",
    "MODULE_IDS",
    "CatalogueError",
    "Domain",
    "FieldError",
    "ModuleDefinition",
    "ModuleKind",
    "TaskConfigError",
    "UnknownModuleError",
    "chance_accuracy_for",
    "get_module",
    "list_modules",
    "resolve_module_id",
    "validate_task_config",
]
