import math
from typing import Any

import pytest

from app.catalogue import TaskConfigError, UnknownModuleError, validate_task_config


def problems(module_id: str, config: Any) -> list[dict[str, str]]:
    with pytest.raises(TaskConfigError) as caught:
        validate_task_config(module_id, config)
    assert caught.value.module_id == module_id
    return [{"field": error["field"], "message": error["message"]} for error in caught.value.errors]


def fields(module_id: str, config: Any) -> list[str]:
    return [error["field"] for error in problems(module_id, config)]


def test_partial_config_is_laid_over_the_defaults() -> None:
    effective = validate_task_config("simple-rt", {"n_trials": 40, "isi_max_ms": 3000})
    assert effective == {
        "n_trials": 40,
        "practice_trials": 3,
        "timeout_ms": 5000,
        "isi_min_ms": 500,
        "isi_max_ms": 3000,
    }


def test_effective_config_keeps_schema_order() -> None:
    effective = validate_task_config("simple-rt", {"isi_max_ms": 3000, "n_trials": 40})
    assert list(effective) == [
        "n_trials",
        "practice_trials",
        "timeout_ms",
        "isi_min_ms",
        "isi_max_ms",
    ]


def test_arrays_are_replaced_whole() -> None:
    assert validate_task_config("n-back", {"levels": [2]})["levels"] == [2]
    assert validate_task_config("n-back", {"levels": [3, 1]})["levels"] == [3, 1]


def test_alias_validates_as_its_target() -> None:
    assert validate_task_config("cpt", {"n_trials": 50}) == validate_task_config(
        "cpt-go-nogo", {"n_trials": 50}
    )


def test_unknown_module() -> None:
    with pytest.raises(UnknownModuleError) as caught:
        validate_task_config("go-fish", {})
    assert caught.value.module_id == "go-fish"


def test_unknown_parameter_is_named_with_a_suggestion() -> None:
    assert problems("simple-rt", {"timeout": 3000}) == [
        {"field": "timeout", "message": "unknown parameter (did you mean 'timeout_ms'?)"}
    ]
    assert problems("simple-rt", {"colour": "red"}) == [
        {"field": "colour", "message": "unknown parameter"}
    ]


@pytest.mark.parametrize(
    ("module_id", "field", "value", "message"),
    [
        ("simple-rt", "n_trials", "20", "must be an integer"),
        ("simple-rt", "n_trials", True, "must be an integer"),
        ("simple-rt", "n_trials", 20.5, "must be an integer"),
        ("simple-rt", "timeout_ms", None, "must be an integer"),
        ("cpt-go-nogo", "target_frequency", "0.3", "must be a number"),
        ("flanker", "include_neutral", "yes", "must be a boolean"),
        ("flanker", "include_neutral", 1, "must be a boolean"),
        ("n-back", "levels", 2, "must be an array"),
        ("digit-span", "direction", 1, "must be a string"),
        ("mfis", "allow_skipping_items", "false", "must be a boolean"),
    ],
)
def test_wrong_type_is_named(module_id: str, field: str, value: Any, message: str) -> None:
    found = problems(module_id, {field: value})
    assert {"field": field, "message": message} in found
    assert {error["field"] for error in found} == {field}


@pytest.mark.parametrize(
    ("module_id", "field", "value", "message"),
    [
        ("simple-rt", "timeout_ms", 1_000_000, "must be less than or equal to 10000"),
        ("simple-rt", "n_trials", 0, "must be greater than or equal to 5"),
        ("simple-rt", "practice_trials", -1, "must be greater than or equal to 0"),
        ("cpt-go-nogo", "target_frequency", 1.0, "must be less than or equal to 0.95"),
        ("n-back", "levels", [], "must have at least 1 item"),
        ("n-back", "levels", [1, 2, 2], "must not contain duplicates"),
        ("digit-span", "direction", "sideways", 'must be one of: "forward", "backward", "both"'),
        ("compass-31", "recall_period_days", 30, "must be 365"),
        ("mfis", "version", "short", 'must be one of: "full", "abbreviated"'),
        ("trail-making", "parts", "C", 'must be one of: "A", "B", "both"'),
    ],
)
def test_out_of_range_value_is_named(module_id: str, field: str, value: Any, message: str) -> None:
    assert problems(module_id, {field: value}) == [{"field": field, "message": message}]


def test_array_items_are_named_by_dotted_path() -> None:
    assert problems("n-back", {"levels": [1, 5]}) == [
        {"field": "levels.1", "message": "must be less than or equal to 3"}
    ]
    assert problems("emotion-recognition", {"emotions": ["fear", "joy"]}) == [
        {
            "field": "emotions.1",
            "message": (
                'must be one of: "happiness", "sadness", "anger", "fear", "disgust",'
                ' "surprise", "neutral"'
            ),
        }
    ]


@pytest.mark.parametrize(
    ("module_id", "config", "field"),
    [
        ("simple-rt", {"isi_min_ms": 2000}, "isi_min_ms"),
        ("simple-rt", {"isi_max_ms": 400}, "isi_min_ms"),
        ("choice-rt", {"isi_min_ms": 1600}, "isi_min_ms"),
        ("digit-span", {"min_length": 8, "max_length": 5}, "min_length"),
        ("corsi-block-tapping", {"n_blocks": 6}, "max_length"),
        ("operation-span", {"min_set_size": 8}, "min_set_size"),
        ("cpt-go-nogo", {"timeout_ms": 2000}, "timeout_ms"),
        ("n-back", {"isi_ms": 1000}, "timeout_ms"),
        ("vigilance-cpt", {"n_trials": 100}, "n_trials"),
        ("attention-network-test", {"include_neutral_flankers": True}, "trials_per_block"),
        ("attention-network-test", {"trials_per_block": 40}, "trials_per_block"),
        ("attention-network-test", {"fixation_min_ms": 2000}, "fixation_min_ms"),
        ("multiple-object-tracking", {"n_targets": 8, "n_objects": 8}, "n_targets"),
        ("digit-symbol-coding", {"timeout_ms": 60_000, "time_limit_ms": 30_000}, "timeout_ms"),
        ("tower-task", {"min_moves": 6}, "min_moves"),
        ("pattern-separation", {"n_study_items": 48}, "n_test_per_type"),
        ("verbal-paired-associates", {"n_pairs": 4, "n_choices": 5}, "n_choices"),
        ("visual-paired-associates", {"n_pairs": 4}, "n_choices"),
        ("emotion-recognition", {"n_trials": 40}, "n_trials"),
        ("mfis", {"version": "abbreviated", "items_per_page": 6}, "items_per_page"),
        ("facs", {"n_items": 10, "items_per_page": 11}, "items_per_page"),
    ],
)
def test_cross_field_violation_is_named(module_id: str, config: dict[str, Any], field: str) -> None:
    assert fields(module_id, config) == [field]


def test_cross_field_message_names_the_other_field() -> None:
    assert problems("simple-rt", {"isi_min_ms": 2000}) == [
        {"field": "isi_min_ms", "message": "must be less than or equal to isi_max_ms (1500)"}
    ]
    assert problems("cpt", {"timeout_ms": 1600}) == [
        {
            "field": "timeout_ms",
            "message": "must be less than or equal to stimulus_duration_ms + isi_ms (1500)",
        }
    ]


def test_several_problems_are_all_listed_in_parameter_order() -> None:
    config = {
        "bogus": 1,
        "n_trials": "many",
        "timeout_ms": 10**9,
        "isi_min_ms": 2000,
        "practice_trials": -3,
    }
    assert fields("simple-rt", config) == [
        "n_trials",
        "practice_trials",
        "timeout_ms",
        "isi_min_ms",
        "bogus",
    ]


def test_schema_and_cross_field_problems_on_one_field_are_both_listed() -> None:
    found = problems("simple-rt", {"isi_min_ms": 20_000})
    assert found == [
        {"field": "isi_min_ms", "message": "must be less than or equal to 10000"},
        {"field": "isi_min_ms", "message": "must be less than or equal to isi_max_ms (1500)"},
    ]


def test_cross_field_rules_skip_values_of_the_wrong_type() -> None:
    assert problems("simple-rt", {"isi_min_ms": "soon"}) == [
        {"field": "isi_min_ms", "message": "must be an integer"}
    ]
    assert fields("emotion-recognition", {"emotions": "fear"}) == ["emotions"]
    assert fields("mfis", {"version": 2}) == ["version"]
    assert fields("attention-network-test", {"include_neutral_flankers": "no"}) == [
        "include_neutral_flankers"
    ]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_rejected(value: float) -> None:
    assert problems("cpt-go-nogo", {"target_frequency": value}) == [
        {"field": "target_frequency", "message": "must be a finite number"}
    ]
    assert problems("simple-rt", {"isi_min_ms": value}) == [
        {"field": "isi_min_ms", "message": "must be a finite number"}
    ]


@pytest.mark.parametrize("config", [[], "n_trials=20", None, 20])
def test_config_must_be_an_object(config: Any) -> None:
    assert problems("simple-rt", config) == [{"field": "", "message": "must be an object"}]


def test_integral_floats_come_back_as_integers() -> None:
    effective = validate_task_config("n-back", {"trials_per_level": 30.0, "levels": [2.0, 1]})
    assert effective["trials_per_level"] == 30
    assert isinstance(effective["trials_per_level"], int)
    assert effective["levels"] == [2, 1]
    assert all(isinstance(level, int) for level in effective["levels"])
    frequency = validate_task_config("cpt", {"target_frequency": 0.25})["target_frequency"]
    assert frequency == 0.25


def test_effective_config_does_not_share_state_with_its_input() -> None:
    levels = [1, 2]
    effective = validate_task_config("n-back", {"levels": levels})
    levels.append(3)
    assert effective["levels"] == [1, 2]
    effective["levels"].append(3)
    assert validate_task_config("n-back", {})["levels"] == [1, 2, 3]


def test_error_message_summarises_every_problem() -> None:
    with pytest.raises(TaskConfigError) as caught:
        validate_task_config("simple-rt", {"n_trials": 0, "bogus": True})
    error = caught.value
    assert isinstance(error, ValueError)
    assert str(error) == (
        "invalid configuration for module 'simple-rt': "
        "n_trials: must be greater than or equal to 5; bogus: unknown parameter"
    )
    assert error.errors == [
        {"field": "n_trials", "message": "must be greater than or equal to 5"},
        {"field": "bogus", "message": "unknown parameter"},
    ]
