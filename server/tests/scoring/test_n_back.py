"""n-back metrics per level and pooled, computed by hand from docs/scoring.md."""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import pytest

from app.scoring import score_task

z = NormalDist().inv_cdf


def test_metrics_per_level_and_pooled() -> None:
    trials: list[dict[str, Any]] = [
        {"level": 1, "condition": "target", "rt": 500},
        {"level": 1, "condition": "target", "rt": None},
        {"level": 1, "condition": "nontarget", "rt": None},
        {"level": 1, "condition": "nontarget", "rt": None},
        {"level": 2, "condition": "target", "rt": 600},
        {"level": 2, "condition": "Target", "rt": 700},
        {"level": 2, "condition": "nontarget", "rt": 650},
        {"level": 2.0, "condition": "nontarget", "rt": None},
        {"level": 2, "condition": "non-target", "rt": None},
        {"level": 3, "condition": "target", "rt": 400, "is_practice": True},
    ]
    assert score_task("n-back", trials).metrics == pytest.approx(
        {
            "hits_1": 1,
            "false_alarms_1": 0,
            "accuracy_1": 3 / 4,
            "d_prime_1": z(1.5 / 3) - z(0.5 / 3),
            "mean_rt_hits_1": 500.0,
            "hits_2": 2,
            "false_alarms_2": 1,
            "accuracy_2": 4 / 5,
            "d_prime_2": z(2.5 / 3) - z(1.5 / 4),
            "mean_rt_hits_2": 650.0,
            # Pooled: 3 hits of 4 targets, 1 false alarm in 5 non-targets.
            "accuracy": 7 / 9,
            "d_prime": z(3.5 / 5) - z(1.5 / 6),
        },
        abs=1e-6,
    )


def test_levels_not_administered_are_not_reported() -> None:
    metrics = score_task("n-back", [{"level": 3, "condition": "target", "rt": 450}]).metrics
    assert set(metrics) == {
        "hits_3",
        "false_alarms_3",
        "accuracy_3",
        "d_prime_3",
        "mean_rt_hits_3",
        "accuracy",
        "d_prime",
    }
    assert metrics["d_prime_3"] is None


def test_trials_without_usable_level_are_not_judged() -> None:
    trials: list[dict[str, Any]] = [
        {"level": "2", "condition": "target", "rt": 300},
        {"level": 1.5, "condition": "target", "rt": 300},
        {"level": True, "condition": "target", "rt": 300},
        {"level": 12, "condition": "target", "rt": 300},
        {"condition": "target", "rt": 300},
        {"level": 2, "rt": 300},
    ]
    assert score_task("n-back", trials).metrics == {"accuracy": None, "d_prime": None}


def test_no_responses() -> None:
    trials: list[dict[str, Any]] = [
        {"level": 1, "condition": "target", "rt": None},
        {"level": 1, "condition": "nontarget", "rt": None},
    ]
    metrics = score_task("n-back", trials).metrics
    assert metrics["hits_1"] == 0
    assert metrics["accuracy_1"] == 0.5
    assert metrics["mean_rt_hits_1"] is None
    assert metrics["d_prime_1"] == pytest.approx(z(0.5 / 2) - z(0.5 / 2), abs=1e-6)
