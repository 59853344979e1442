"""simple-rt metrics, computed by hand from docs/scoring.md."""

from __future__ import annotations

import math
from typing import Any

import pytest

from app.scoring import score_task


def test_normal_case() -> None:
    trials: list[dict[str, Any]] = [
        {"task": "simple-rt", "trial_index": 0, "rt": 200, "is_practice": True},
        {"task": "simple-rt", "trial_index": 1, "rt": 250},
        {"task": "simple-rt", "trial_index": 2, "rt": 300},
        {"task": "simple-rt", "trial_index": 3, "rt": 350},
        {"task": "simple-rt", "trial_index": 4, "rt": None},
        {"task": "simple-rt", "trial_index": 5, "rt": 80},
        {"task": "simple-rt", "trial_index": 6, "rt": 600},
    ]
    score = score_task("simple-rt", trials)
    assert (score.task, score.scorer, score.scorer_version) == (
        "simple-rt",
        "simple-rt",
        "simple-rt/1.0.0",
    )
    # RTs >= 100: 250, 300, 350, 600; mean 375, squared deviations 72500.
    assert score.metrics == pytest.approx(
        {
            "n_trials": 6,
            "n_responses": 5,
            "n_timeouts": 1,
            "n_anticipations": 1,
            "mean_rt": 375.0,
            "median_rt": 325.0,
            "sd_rt": math.sqrt(72500 / 3),
            "n_lapses": 1,
        },
        abs=1e-6,
    )


def test_thresholds_are_inclusive_at_100_and_500() -> None:
    metrics = score_task(
        "simple-rt", [{"rt": 99.999}, {"rt": 100}, {"rt": 499.999}, {"rt": 500}]
    ).metrics
    assert metrics["n_anticipations"] == 1
    assert metrics["n_lapses"] == 1
    assert metrics["mean_rt"] == pytest.approx((100 + 499.999 + 500) / 3, abs=1e-6)


def test_no_responses() -> None:
    metrics = score_task("simple-rt", [{"rt": None}, {"rt": None}, {}]).metrics
    assert metrics == {
        "n_trials": 3,
        "n_responses": 0,
        "n_timeouts": 3,
        "n_anticipations": 0,
        "mean_rt": None,
        "median_rt": None,
        "sd_rt": None,
        "n_lapses": 0,
    }


def test_all_anticipations() -> None:
    metrics = score_task("simple-rt", [{"rt": 50}, {"rt": 0}, {"rt": -20}]).metrics
    assert metrics["n_responses"] == 3
    assert metrics["n_anticipations"] == 3
    assert (metrics["mean_rt"], metrics["median_rt"], metrics["sd_rt"]) == (None, None, None)


def test_one_response_has_no_sd() -> None:
    metrics = score_task("simple-rt", [{"rt": 420}]).metrics
    assert (metrics["mean_rt"], metrics["median_rt"], metrics["sd_rt"]) == (420.0, 420.0, None)


def test_unusable_rts_count_as_no_response() -> None:
    trials: list[dict[str, Any]] = [
        {"rt": "300"},
        {"rt": True},
        {"rt": math.nan},
        {"rt": math.inf},
        {"rt": [300]},
        {"trial_index": 9},
        {"rt": 300},
    ]
    metrics = score_task("simple-rt", trials).metrics
    assert (metrics["n_trials"], metrics["n_responses"], metrics["n_timeouts"]) == (7, 1, 6)
    assert metrics["mean_rt"] == 300.0


def test_practice_trials_only() -> None:
    metrics = score_task("simple-rt", [{"rt": 300, "is_practice": True}]).metrics
    assert metrics["n_trials"] == 0
    assert metrics["mean_rt"] is None
