"""The generic scorer, computed by hand from the general rules of docs/scoring.md."""

from __future__ import annotations

import math
from typing import Any

import pytest

from app.scoring import score_task


def test_task_with_correctness() -> None:
    trials: list[dict[str, Any]] = [
        {"rt": 300, "correct": True},
        {"rt": 500, "correct": True},
        {"rt": 400, "correct": False},
        {"rt": None, "correct": True},
        {"rt": None, "correct": False},
        {"rt": 50, "correct": True},
        {"rt": 250, "correct": True, "is_practice": True},
    ]
    score = score_task("vigilance-cpt", trials)
    assert (score.task, score.scorer, score.scorer_version) == (
        "vigilance-cpt",
        "generic",
        "generic/1.0.0",
    )
    assert score.metrics == pytest.approx(
        {
            "n_trials": 6,
            "n_responses": 4,
            "accuracy": 4 / 6,
            "mean_rt": 400.0,
            "median_rt": 400.0,
            "sd_rt": math.sqrt(20000),
            "n_anticipations": 1,
        },
        abs=1e-6,
    )


def test_task_without_correctness() -> None:
    metrics = score_task("delay-discounting", [{"rt": 300}, {"rt": 400}, {"rt": 500}]).metrics
    assert metrics == pytest.approx(
        {
            "n_trials": 3,
            "n_responses": 3,
            "accuracy": None,
            "mean_rt": 400.0,
            "median_rt": 400.0,
            "sd_rt": 100.0,
            "n_anticipations": 0,
        },
        abs=1e-6,
    )


def test_no_trials() -> None:
    assert score_task("corsi-block-tapping", []).metrics == {
        "n_trials": 0,
        "n_responses": 0,
        "accuracy": None,
        "mean_rt": None,
        "median_rt": None,
        "sd_rt": None,
        "n_anticipations": 0,
    }
