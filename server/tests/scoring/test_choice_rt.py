"""choice-rt metrics, computed by hand from docs/scoring.md."""

from __future__ import annotations

import math
from typing import Any

import pytest

from app.scoring import score_task


def test_normal_case() -> None:
    trials: list[dict[str, Any]] = [
        {"rt": 400, "correct": True},
        {"rt": 500, "correct": True},
        {"rt": 450, "correct": False},
        {"rt": 90, "correct": True},
        {"rt": None, "correct": False},
        {"rt": 600, "correct": None},
        {"rt": 300, "correct": True, "is_practice": True},
    ]
    # Correct: trials 1, 2 and 4 of 6. RT statistics over correct trials with rt >= 100: 400, 500.
    assert score_task("choice-rt", trials).metrics == pytest.approx(
        {
            "n_trials": 6,
            "accuracy": 0.5,
            "mean_rt": 450.0,
            "median_rt": 450.0,
            "sd_rt": math.sqrt(5000),
            "n_anticipations": 1,
        },
        abs=1e-6,
    )


def test_no_responses() -> None:
    metrics = score_task("choice-rt", [{"rt": None, "correct": False}] * 4).metrics
    assert metrics == {
        "n_trials": 4,
        "accuracy": 0.0,
        "mean_rt": None,
        "median_rt": None,
        "sd_rt": None,
        "n_anticipations": 0,
    }


def test_all_anticipations() -> None:
    metrics = score_task("choice-rt", [{"rt": 40, "correct": True}] * 3).metrics
    assert metrics["accuracy"] == 1.0
    assert metrics["n_anticipations"] == 3
    assert metrics["mean_rt"] is None


def test_missing_correctness_is_not_correct() -> None:
    metrics = score_task("choice-rt", [{"rt": 400}, {"rt": 500, "correct": "yes"}]).metrics
    assert metrics["accuracy"] == 0.0
    assert metrics["mean_rt"] is None


def test_no_trials() -> None:
    metrics = score_task("choice-rt", []).metrics
    assert metrics["n_trials"] == 0
    assert metrics["accuracy"] is None
