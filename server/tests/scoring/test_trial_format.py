"""Each scorer's trial format: a valid schema, an example that satisfies it and scores cleanly,
labels the scorer itself recognises, and the JSON types the submit endpoint enforces."""

from __future__ import annotations

import math
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from app.scoring import registered_task_ids, score_task, scorer_for, task_flags
from app.scoring.trial_format import TrialFormat

# Every registered scorer, plus a task the generic scorer takes.
TASKS = [*registered_task_ids(), "wcst"]


def _format(task: str) -> TrialFormat:
    return scorer_for(task).trial_format


@pytest.mark.parametrize("task", TASKS)
def test_the_example_satisfies_the_schema_and_scores_without_flags(task: str) -> None:
    schema = _format(task).json_schema(task)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    trials = _format(task).example_trials(task)
    assert [trial["trial_index"] for trial in trials] == list(range(len(trials)))
    validator = Draft202012Validator(schema)
    for trial in trials:
        assert not list(validator.iter_errors(trial)), trial
    score = score_task(task, trials)
    flags = task_flags(task, trials, score, chance_accuracy=None, client_summary=None)
    assert flags == []
    assert all(value is not None for value in score.metrics.values()), score.metrics


@pytest.mark.parametrize("task", TASKS)
def test_the_scorer_recognises_every_published_label_in_any_spelling(task: str) -> None:
    for field in _format(task).fields:
        for label in field.labels:
            assert field.schema["enum"] == list(field.labels)
            assert field.read(label) is not None, (field.name, label)
            assert field.read(f" {label.upper()} ") == field.read(label)
        if field.labels:
            assert field.read("surely-not-a-label") is None


@pytest.mark.parametrize("task", TASKS)
def test_required_fields_are_published_as_required(task: str) -> None:
    trial_format = _format(task)
    schema = trial_format.json_schema(task)
    expected = ["task", "trial_index", *(f.name for f in trial_format.fields if f.required)]
    assert schema["required"] == expected
    assert set(schema["properties"]) >= {"task", "trial_index", "rt", "is_practice"}


def test_the_published_schema_is_a_copy() -> None:
    schema = _format("flanker").json_schema("flanker")
    schema["properties"]["condition"]["enum"].append("sideways")
    assert (
        "sideways"
        not in _format("flanker").json_schema("flanker")["properties"]["condition"]["enum"]
    )


@pytest.mark.parametrize(
    ("task", "trial", "errors"),
    [
        ("digit-span", {"span_length": "5"}, [("span_length", "integer")]),
        ("digit-span", {"span_length": 5.0}, []),
        ("digit-span", {"span_length": 5.5}, [("span_length", "integer")]),
        ("digit-span", {"span_length": None}, []),
        ("n-back", {"level": True}, [("level", "integer")]),
        ("trail-making", {"rt": "30000", "errors": "1"}, [("rt", "number"), ("errors", "integer")]),
        ("mfis", {"response": "3", "min": 0, "max": 4.5}, [("response", "number")]),
        (
            "mfis",
            {"response": math.inf, "min": math.nan},
            [("response", "number"), ("min", "number")],
        ),
        # `response` is free in tasks whose scorer does not read it as a number.
        ("choice-rt", {"response": "left"}, []),
    ],
)
def test_type_errors_follow_the_published_json_types(
    task: str, trial: dict[str, Any], errors: list[tuple[str, str]]
) -> None:
    found = _format(task).type_errors(trial)
    assert [(error.field, error.json_type) for error in found] == errors


def test_compass_31_items_must_carry_their_bounds() -> None:
    assert {"min", "max"} <= set(_format("compass-31").json_schema("compass-31")["required"])
    assert "min" not in _format("mfis").json_schema("mfis")["required"]
