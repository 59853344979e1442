"""digit-span metrics, computed by hand from docs/scoring.md."""

from __future__ import annotations

from typing import Any

from app.scoring import score_task


def test_normal_case() -> None:
    trials: list[dict[str, Any]] = [
        {"direction": "forward", "span_length": 3, "correct": True},
        {"direction": "forward", "span_length": 3, "correct": True},
        {"direction": "forward", "span_length": 4, "correct": True},
        {"direction": "forward", "span_length": 4, "correct": False},
        {"direction": "Forward", "span_length": 5, "correct": False},
        {"direction": "forward", "span_length": 5, "correct": False},
        {"direction": "backward", "span_length": 3, "correct": True},
        {"direction": "backward", "span_length": 3, "correct": False},
        {"direction": "BACKWARD", "span_length": 4, "correct": False},
        {"direction": "backward", "span_length": 7, "correct": True, "is_practice": True},
    ]
    assert score_task("digit-span", trials).metrics == {
        "max_span_forward": 4,
        "max_span_backward": 3,
        "total_correct_forward": 3,
        "total_correct_backward": 1,
        "total_correct": 4,
    }


def test_no_correct_trials_give_span_zero() -> None:
    trials: list[dict[str, Any]] = [
        {"direction": "forward", "span_length": 3, "correct": False},
        {"direction": "backward", "span_length": 3, "correct": None},
    ]
    assert score_task("digit-span", trials).metrics == {
        "max_span_forward": 0,
        "max_span_backward": 0,
        "total_correct_forward": 0,
        "total_correct_backward": 0,
        "total_correct": 0,
    }


def test_missing_fields() -> None:
    trials: list[dict[str, Any]] = [
        {"direction": "forward", "correct": True},
        {"direction": "forward", "span_length": "5", "correct": True},
        {"direction": "forward", "span_length": 4, "correct": True},
        {"span_length": 9, "correct": True},
        {"direction": "sideways", "span_length": 9, "correct": True},
    ]
    metrics = score_task("digit-span", trials).metrics
    assert metrics["max_span_forward"] == 4
    assert metrics["total_correct_forward"] == 3
    assert metrics["total_correct"] == 3
