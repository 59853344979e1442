"""Assembles catalogue entries from parameter schemas."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

from app.catalogue.model import (
    CatalogueEntry,
    ChanceRule,
    Check,
    Domain,
    JSONSchema,
    ModuleDefinition,
    ModuleKind,
)
from app.catalogue.params import config_schema


def define_module(
    *,
    module_id: str,
    name: str,
    domain: Domain,
    kind: ModuleKind = ModuleKind.COGNITIVE,
    description: str,
    parameters: Mapping[str, JSONSchema],
    summary_metrics: Sequence[str],
    scorer: str,
    chance: ChanceRule,
    checks: Sequence[Check] = (),
) -> CatalogueEntry:
    """One entry; the default configuration is read from the parameters' `default`s, so the
    schema and the defaults cannot drift apart."""
    default_config = {key: copy.deepcopy(schema["default"]) for key, schema in parameters.items()}
    definition = ModuleDefinition(
        id=module_id,
        name=name,
        domain=domain,
        kind=kind,
        description=" ".join(description.split()),
        default_config=default_config,
        config_schema=config_schema(module_id, name, parameters),
        summary_metrics=list(summary_metrics),
        chance_accuracy=chance(default_config),
        scorer=scorer,
    )
    return CatalogueEntry(definition=definition, checks=tuple(checks), chance=chance)
