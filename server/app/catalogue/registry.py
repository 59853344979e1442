"""The catalogue itself: every entry in its published order, with lookup by id or alias."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import TypeVar

from jsonschema import Draft202012Validator

from app.catalogue import (
    attention,
    decision_making,
    episodic_memory,
    executive_function,
    language,
    patient_reported_outcomes,
    processing_speed,
    social_cognition,
    working_memory,
)
from app.catalogue.errors import UnknownModuleError
from app.catalogue.model import CatalogueEntry, Domain, ModuleDefinition, ModuleKind
from app.core.task_ids import MODULE_ID_ALIASES, TASK_ALIASES

_ENTRIES: tuple[CatalogueEntry, ...] = (
    *attention.MODULES,
    *working_memory.MODULES,
    *processing_speed.MODULES,
    *executive_function.MODULES,
    *episodic_memory.MODULES,
    *language.MODULES,
    *social_cognition.MODULES,
    *decision_making.MODULES,
    *patient_reported_outcomes.MODULES,
)

_EnumT = TypeVar("_EnumT", Domain, ModuleKind)

MODULE_ALIASES: Mapping[str, str] = MappingProxyType(
    {alias: TASK_ALIASES[alias] for alias in sorted(MODULE_ID_ALIASES)}
)
"""Other ids accepted on lookup, mapped to the catalogue id: the part of the shared alias table
that module ids may use."""


def _index(entries: tuple[CatalogueEntry, ...]) -> dict[str, CatalogueEntry]:
    index: dict[str, CatalogueEntry] = {}
    for entry in entries:
        module_id = entry.definition.id
        if module_id in index:
            raise RuntimeError(f"module id {module_id!r} is defined twice")
        index[module_id] = entry
    for alias, target in MODULE_ALIASES.items():
        if alias in index or target not in index:
            raise RuntimeError(f"alias {alias!r} -> {target!r} does not fit the catalogue")
    return index


_BY_ID = _index(_ENTRIES)
_VALIDATORS = {
    module_id: Draft202012Validator(entry.definition.config_schema)
    for module_id, entry in _BY_ID.items()
}

MODULE_IDS: tuple[str, ...] = tuple(entry.definition.id for entry in _ENTRIES)
"""Catalogue ids in published order."""


def resolve_module_id(module_id: str) -> str:
    """The catalogue id for `module_id` or one of its aliases."""
    canonical = MODULE_ALIASES.get(module_id, module_id)
    if canonical not in _BY_ID:
        raise UnknownModuleError(module_id)
    return canonical


def entry_for(module_id: str) -> CatalogueEntry:
    return _BY_ID[resolve_module_id(module_id)]


def validator_for(module_id: str) -> Draft202012Validator:
    return _VALIDATORS[resolve_module_id(module_id)]


def _detached(definition: ModuleDefinition) -> ModuleDefinition:
    # Callers get their own copies, so nothing they do can alter the catalogue.
    return dataclasses.replace(
        definition,
        default_config=copy.deepcopy(definition.default_config),
        config_schema=copy.deepcopy(definition.config_schema),
        summary_metrics=list(definition.summary_metrics),
    )


def _parse(enum: type[_EnumT], value: str, what: str) -> _EnumT:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise ValueError(f"unknown {what} {value!r}; expected one of: {allowed}") from None


def list_modules(*, domain: str | None = None, kind: str | None = None) -> list[ModuleDefinition]:
    """Modules in published order, optionally filtered; an unknown domain or kind is a
    ValueError rather than an empty list, so a typo cannot pass for "no modules"."""
    wanted_domain = None if domain is None else _parse(Domain, domain, "domain")
    wanted_kind = None if kind is None else _parse(ModuleKind, kind, "kind")
    return [
        _detached(entry.definition)
        for entry in _ENTRIES
        if (wanted_domain is None or entry.definition.domain is wanted_domain)
        and (wanted_kind is None or entry.definition.kind is wanted_kind)
    ]


def get_module(module_id: str) -> ModuleDefinition:
    """The module with this id or alias; `UnknownModuleError` otherwise."""
    return _detached(entry_for(module_id).definition)
