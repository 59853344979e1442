"""trail-making metrics, computed by hand from docs/scoring.md."""

from __future__ import annotations

from typing import Any

import pytest

from app.scoring import score_task


def test_normal_case() -> None:
    trials: list[dict[str, Any]] = [
        {"part": "A", "rt": 30000, "errors": 1},
        {"part": "B", "rt": 75000, "errors": 3},
        {"part": "A", "rt": 9000, "errors": 0, "is_practice": True},
    ]
    assert score_task("trail-making", trials).metrics == pytest.approx(
        {
            "time_a": 30000.0,
            "time_b": 75000.0,
            "errors_a": 1,
            "errors_b": 3,
            "b_minus_a": 45000.0,
            "b_over_a": 2.5,
        },
        abs=1e-6,
    )


def test_time_a_zero_gives_no_ratio() -> None:
    metrics = score_task(
        "trail-making", [{"part": "a", "rt": 0}, {"part": "b", "rt": 50000}]
    ).metrics
    assert metrics["b_over_a"] is None
    assert metrics["b_minus_a"] == 50000.0


@pytest.mark.parametrize(
    "part_a", [None, {"part": "A"}, {"part": "A", "rt": "30000"}, {"part": "A", "rt": -5}]
)
def test_time_a_missing_gives_no_difference_or_ratio(part_a: dict[str, object] | None) -> None:
    trials: list[dict[str, Any]] = [{"part": "B", "rt": 75000, "errors": 2}]
    if part_a is not None:
        trials.append(part_a)
    metrics = score_task("trail-making", trials).metrics
    assert metrics["time_a"] is None
    assert metrics["b_minus_a"] is None
    assert metrics["b_over_a"] is None
    assert metrics["errors_b"] == 2


def test_unusable_errors_are_missing() -> None:
    trials: list[dict[str, Any]] = [
        {"part": "A", "rt": 1000, "errors": -1},
        {"part": "B", "rt": 2000, "errors": 1.5},
    ]
    metrics = score_task("trail-making", trials).metrics
    assert (metrics["errors_a"], metrics["errors_b"]) == (None, None)


def test_the_last_attempt_at_a_part_stands() -> None:
    trials: list[dict[str, Any]] = [
        {"part": "A", "rt": 90000, "errors": 7},
        {"part": "A", "rt": 40000, "errors": 2},
        {"part": "B", "rt": 100000, "errors": 0},
    ]
    metrics = score_task("trail-making", trials).metrics
    assert (metrics["time_a"], metrics["errors_a"], metrics["b_over_a"]) == (40000.0, 2, 2.5)


def test_no_trials() -> None:
    assert score_task("tmt", []).metrics == {
        "time_a": None,
        "time_b": None,
        "errors_a": None,
        "errors_b": None,
        "b_minus_a": None,
        "b_over_a": None,
    }
