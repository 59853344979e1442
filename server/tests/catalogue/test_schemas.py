import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from app.catalogue import MODULE_IDS, ModuleKind, get_module, validate_task_config

SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")

# Tasks whose trials are timed responses: each must bound the wait for a response.
RT_TASKS = [
    "attention-network-test",
    "choice-rt",
    "cpt-go-nogo",
    "divided-attention",
    "flanker",
    "vigilance-cpt",
    "letter-number-switching",
    "n-back",
    "digit-symbol-coding",
    "simple-rt",
    "probabilistic-reversal-learning",
    "stroop",
    "pattern-separation",
    "emotion-recognition",
]


def properties_of(module_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = get_module(module_id).config_schema["properties"]
    return properties


@pytest.mark.parametrize("module_id", MODULE_IDS)
def test_schema_is_a_valid_closed_2020_12_object_schema(module_id: str) -> None:
    schema = get_module(module_id).config_schema
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["properties"]


def check_bounded(name: str, schema: dict[str, Any]) -> None:
    kind = schema.get("type")
    assert kind in {"integer", "number", "boolean", "string", "array"}, name
    if "const" in schema:
        return
    if kind in {"integer", "number"}:
        assert "minimum" in schema or "exclusiveMinimum" in schema, name
        assert "maximum" in schema or "exclusiveMaximum" in schema, name
    elif kind == "string":
        assert schema.get("enum"), name
    elif kind == "array":
        assert "minItems" in schema, name
        assert "maxItems" in schema, name
        check_bounded(f"{name}[]", schema["items"])


@pytest.mark.parametrize("module_id", MODULE_IDS)
def test_every_parameter_is_typed_bounded_described_and_defaulted(module_id: str) -> None:
    for name, schema in properties_of(module_id).items():
        assert SNAKE_CASE.fullmatch(name), name
        assert schema.get("description"), name
        assert "default" in schema, name
        check_bounded(name, schema)


@pytest.mark.parametrize("module_id", MODULE_IDS)
def test_default_config_is_the_schema_defaults_and_validates(module_id: str) -> None:
    module = get_module(module_id)
    properties = properties_of(module_id)
    assert module.default_config == {name: schema["default"] for name, schema in properties.items()}
    Draft202012Validator(module.config_schema).validate(module.default_config)
    for name, schema in properties.items():
        Draft202012Validator(schema).validate(schema["default"])
        assert name in module.default_config


@pytest.mark.parametrize("module_id", MODULE_IDS)
def test_empty_config_yields_the_defaults(module_id: str) -> None:
    assert validate_task_config(module_id, {}) == get_module(module_id).default_config


@pytest.mark.parametrize("module_id", MODULE_IDS)
def test_defaults_round_trip(module_id: str) -> None:
    defaults = get_module(module_id).default_config
    assert validate_task_config(module_id, defaults) == defaults


@pytest.mark.parametrize("module_id", MODULE_IDS)
def test_every_cognitive_task_has_practice_trials(module_id: str) -> None:
    properties = properties_of(module_id)
    if get_module(module_id).kind is ModuleKind.COGNITIVE:
        assert properties["practice_trials"]["type"] == "integer"
        assert properties["practice_trials"]["minimum"] == 0
    else:
        assert "practice_trials" not in properties


@pytest.mark.parametrize("module_id", RT_TASKS)
def test_rt_tasks_have_a_timeout(module_id: str) -> None:
    timeout = properties_of(module_id)["timeout_ms"]
    assert timeout["type"] == "integer"
    assert timeout["minimum"] >= 100


def test_client_task_config_defaults() -> None:
    assert validate_task_config("simple-rt", {}) == {
        "n_trials": 20,
        "practice_trials": 3,
        "timeout_ms": 5000,
        "isi_min_ms": 500,
        "isi_max_ms": 1500,
    }
    cpt = validate_task_config("cpt", {})
    assert cpt["n_trials"] == 100
    assert cpt["target_frequency"] == 0.3
    assert cpt["stimulus_duration_ms"] == 500
    assert cpt["isi_ms"] == 1000
    n_back = validate_task_config("n-back", {})
    assert n_back["levels"] == [1, 2, 3]
    assert n_back["trials_per_level"] == 20
    assert n_back["stimulus_duration_ms"] == 500
    assert n_back["isi_ms"] == 2000
    digit_span = validate_task_config("digit-span", {})
    assert digit_span["min_length"] == 3
    assert digit_span["max_length"] == 9
    assert digit_span["trials_per_length"] == 2
    assert properties_of("digit-span")["direction"]["enum"] == ["forward", "backward", "both"]


def test_pro_instruments_are_faithful() -> None:
    assert properties_of("compass-31")["recall_period_days"]["const"] == 365
    assert properties_of("compass-31")["items_per_page"]["maximum"] == 31
    assert properties_of("mfis")["recall_period_days"]["const"] == 28
    assert properties_of("mfis")["version"]["enum"] == ["full", "abbreviated"]
    assert properties_of("mfis")["items_per_page"]["maximum"] == 21
    assert properties_of("promis-pediatric-profile-25")["recall_period_days"]["const"] == 7
    assert properties_of("promis-pediatric-profile-25")["items_per_page"]["maximum"] == 25
    assert properties_of("brain-fog-scale")["items_per_page"]["maximum"] == 23
    assert validate_task_config("mfis", {"version": "abbreviated", "items_per_page": 5})
    assert validate_task_config("facs", {"n_items": 12, "items_per_page": 12})["n_items"] == 12
