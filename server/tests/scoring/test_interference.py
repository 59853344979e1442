"""flanker and stroop metrics, computed by hand from docs/scoring.md."""

from __future__ import annotations

from typing import Any

import pytest

from app.scoring import score_task

TRIALS: list[dict[str, Any]] = [
    {"condition": "congruent", "rt": 400, "correct": True},
    {"condition": "congruent", "rt": 500, "correct": True},
    {"condition": "congruent", "rt": 450, "correct": False},
    {"condition": "Incongruent", "rt": 550, "correct": True},
    {"condition": "incongruent", "rt": 650, "correct": True},
    {"condition": "incongruent", "rt": 600, "correct": False},
    {"condition": "incongruent", "rt": None, "correct": False},
    {"condition": "neutral", "rt": 480, "correct": True},
    {"condition": "incongruent", "rt": 200, "correct": True, "is_practice": True},
]

EXPECTED = {
    "accuracy": 5 / 8,
    "accuracy_congruent": 2 / 3,
    "accuracy_incongruent": 2 / 4,
    "mean_rt_congruent": 450.0,
    "mean_rt_incongruent": 600.0,
    "interference_rt": 150.0,
    "interference_accuracy": 2 / 3 - 2 / 4,
}


@pytest.mark.parametrize("task", ["flanker", "stroop"])
def test_normal_case(task: str) -> None:
    score = score_task(task, TRIALS)
    assert (score.task, score.scorer, score.scorer_version) == (
        task,
        "interference",
        "interference/1.0.0",
    )
    assert score.metrics == pytest.approx(EXPECTED, abs=1e-6)


def test_missing_condition_gives_no_contrast() -> None:
    metrics = score_task(
        "flanker", [{"condition": "congruent", "rt": 400, "correct": True}]
    ).metrics
    assert metrics["mean_rt_congruent"] == 400.0
    assert metrics["accuracy_incongruent"] is None
    assert metrics["interference_rt"] is None
    assert metrics["interference_accuracy"] is None


def test_all_anticipations() -> None:
    trials: list[dict[str, Any]] = [
        {"condition": "congruent", "rt": 30, "correct": True},
        {"condition": "incongruent", "rt": 30, "correct": True},
    ]
    metrics = score_task("stroop", trials).metrics
    assert metrics["accuracy"] == 1.0
    assert metrics["interference_rt"] is None
    assert metrics["interference_accuracy"] == 0.0
