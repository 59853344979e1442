import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.catalogue import (
    MODULE_ALIASES,
    MODULE_IDS,
    Domain,
    ModuleKind,
    UnknownModuleError,
    get_module,
    list_modules,
    resolve_module_id,
    validate_task_config,
)
from app.scoring import TASK_ALIASES, canonical_task_id

EXPECTED_BY_DOMAIN: dict[str, list[str]] = {
    "attention": [
        "attention-network-test",
        "choice-rt",
        "cpt-go-nogo",
        "divided-attention",
        "flanker",
        "multiple-object-tracking",
        "vigilance-cpt",
    ],
    "working_memory": [
        "corsi-block-tapping",
        "digit-span",
        "letter-number-switching",
        "n-back",
        "operation-span",
    ],
    "processing_speed": ["digit-symbol-coding", "simple-rt"],
    "executive_function": [
        "matrix-reasoning",
        "probabilistic-reversal-learning",
        "stroop",
        "tower-task",
        "trail-making",
        "wcst",
    ],
    "episodic_memory": [
        "pattern-separation",
        "picture-sequence-memory",
        "source-memory",
        "verbal-paired-associates",
        "visual-paired-associates",
    ],
    "language": ["semantic-fluency", "sentence-comprehension", "vocabulary"],
    "social_cognition": ["emotion-recognition", "theory-of-mind"],
    "decision_making": ["delay-discounting"],
    "patient_reported_outcome": [
        "brain-fog-scale",
        "compass-31",
        "facs",
        "mfis",
        "promis-pediatric-profile-25",
    ],
}
EXPECTED_ORDER = [module_id for ids in EXPECTED_BY_DOMAIN.values() for module_id in ids]
PRO_IDS = EXPECTED_BY_DOMAIN["patient_reported_outcome"]
FIRST_WAVE_SCORERS = {
    "simple-rt": "simple-rt",
    "choice-rt": "choice-rt",
    "cpt-go-nogo": "cpt-go-nogo",
    "n-back": "n-back",
    "digit-span": "digit-span",
    "trail-making": "trail-making",
    "flanker": "flanker",
    "stroop": "stroop",
    "attention-network-test": "attention-network-test",
}
KEBAB_CASE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def test_catalogue_has_the_36_modules_in_published_order() -> None:
    ids = [module.id for module in list_modules()]
    assert len(ids) == 36
    assert len(set(ids)) == 36
    assert ids == EXPECTED_ORDER
    assert list(MODULE_IDS) == EXPECTED_ORDER


@pytest.mark.parametrize("module_id", EXPECTED_ORDER)
def test_ids_are_kebab_case(module_id: str) -> None:
    assert KEBAB_CASE.fullmatch(module_id)


@pytest.mark.parametrize(("domain", "expected"), EXPECTED_BY_DOMAIN.items())
def test_domains_match_the_task_library(domain: str, expected: list[str]) -> None:
    modules = list_modules(domain=domain)
    assert [module.id for module in modules] == expected
    assert {module.domain for module in modules} == {Domain(domain)}


def test_every_domain_is_used_and_no_other() -> None:
    assert {module.domain.value for module in list_modules()} == set(EXPECTED_BY_DOMAIN)
    assert {member.value for member in Domain} == set(EXPECTED_BY_DOMAIN)


def test_kinds_separate_pros_from_cognitive_tasks() -> None:
    assert [module.id for module in list_modules(kind="pro")] == PRO_IDS
    cognitive = [module.id for module in list_modules(kind="cognitive")]
    assert cognitive == [module_id for module_id in EXPECTED_ORDER if module_id not in PRO_IDS]
    for module in list_modules():
        expected = ModuleKind.PRO if module.id in PRO_IDS else ModuleKind.COGNITIVE
        assert module.kind is expected


def test_filters_combine_and_accept_enum_members() -> None:
    assert list_modules(domain=Domain.PATIENT_REPORTED_OUTCOME, kind=ModuleKind.COGNITIVE) == []
    language = list_modules(domain=Domain.LANGUAGE, kind=ModuleKind.COGNITIVE)
    assert [module.id for module in language] == EXPECTED_BY_DOMAIN["language"]


@pytest.mark.parametrize(
    ("domain", "kind"), [("memory", None), ("Attention", None), (None, "questionnaire")]
)
def test_unknown_filters_are_rejected(domain: str | None, kind: str | None) -> None:
    with pytest.raises(ValueError, match="expected one of"):
        list_modules(domain=domain, kind=kind)


def test_cpt_is_an_alias_of_cpt_go_nogo() -> None:
    assert dict(MODULE_ALIASES) == {"cpt": "cpt-go-nogo"}
    assert get_module("cpt") == get_module("cpt-go-nogo")
    assert get_module("cpt").id == "cpt-go-nogo"
    assert resolve_module_id("cpt") == "cpt-go-nogo"
    assert resolve_module_id("flanker") == "flanker"
    assert "cpt" not in [module.id for module in list_modules()]


@pytest.mark.parametrize("module_id", ["nope", "", "Simple-RT", " simple-rt", "simple_rt", "CPT"])
def test_unknown_ids_raise_unknown_module_error(module_id: str) -> None:
    with pytest.raises(UnknownModuleError) as caught:
        get_module(module_id)
    assert caught.value.module_id == module_id
    assert isinstance(caught.value, LookupError)
    with pytest.raises(UnknownModuleError):
        resolve_module_id(module_id)
    with pytest.raises(UnknownModuleError):
        validate_task_config(module_id, {})


def test_callers_cannot_alter_the_catalogue() -> None:
    module = get_module("n-back")
    module.default_config["levels"].append(4)
    module.default_config["trials_per_level"] = 1
    module.config_schema["properties"].clear()
    module.summary_metrics.append("bogus")
    for listed in list_modules():
        listed.default_config.clear()

    fresh = get_module("n-back")
    assert fresh.default_config["levels"] == [1, 2, 3]
    assert fresh.default_config["trials_per_level"] == 20
    assert "levels" in fresh.config_schema["properties"]
    assert "bogus" not in fresh.summary_metrics
    assert validate_task_config("n-back", {})["levels"] == [1, 2, 3]


def test_definitions_are_frozen() -> None:
    module = get_module("simple-rt")
    with pytest.raises(dataclasses.FrozenInstanceError):
        module.name = "renamed"  # type: ignore[misc]


@pytest.mark.parametrize("module_id", EXPECTED_ORDER)
def test_scorer_names(module_id: str) -> None:
    module = get_module(module_id)
    if module_id in FIRST_WAVE_SCORERS:
        assert module.scorer == FIRST_WAVE_SCORERS[module_id]
    elif module_id in PRO_IDS:
        assert module.scorer == "pro"
    else:
        assert module.scorer == "generic"


@pytest.mark.parametrize("module_id", EXPECTED_ORDER)
def test_names_and_descriptions_are_written_out(module_id: str) -> None:
    module = get_module(module_id)
    assert module.name.strip() == module.name
    assert module.name
    assert module.description.endswith(".")
    assert 60 <= len(module.description) <= 600
    assert "  " not in module.description
    assert "\n" not in module.description


def test_catalogue_is_pure() -> None:
    # Import in a fresh interpreter: the catalogue must not pull in the web, database or
    # scoring layers.
    probe = (
        "import sys, app.catalogue; "
        "print(sorted(m for m in ('fastapi', 'starlette', 'sqlalchemy', 'app.scoring')"
        " if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == "[]"


def test_aliases_resolve_as_the_scorers_resolve_them() -> None:
    # One alias table serves both: what the catalogue accepts, submissions score the same way.
    assert set(TASK_ALIASES.values()) <= set(MODULE_IDS)
    for alias, module_id in MODULE_ALIASES.items():
        assert TASK_ALIASES[alias] == module_id
        assert canonical_task_id(alias) == resolve_module_id(alias)
