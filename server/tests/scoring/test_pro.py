"""Likert PRO metrics, computed by hand from docs/scoring.md."""

from __future__ import annotations

from typing import Any

import pytest

from app.scoring import score_task
from app.scoring.pro import DEFAULT_SCALE_BOUNDS


def test_reverse_items_with_default_and_item_bounds() -> None:
    items: list[dict[str, Any]] = [
        {"trial_index": 0, "response": 3},
        {"trial_index": 1, "response": 2, "reverse": True},
        {"trial_index": 2, "response": 4, "reverse": True},
        {"trial_index": 3, "response": None},
        {"trial_index": 4, "response": 5},
        {"trial_index": 5, "response": 5, "reverse": True, "min": 1, "max": 5},
        {"trial_index": 6, "response": 4, "is_practice": True},
    ]
    score = score_task("mfis", items)
    assert (score.scorer, score.scorer_version) == ("likert-pro", "likert-pro/1.0.0")
    # Scored as 3, 4 - 2 = 2, 4 - 4 = 0, unanswered, out of 0-4, 1 + 5 - 5 = 1.
    assert score.metrics == pytest.approx(
        {"n_items": 6, "n_answered": 4, "raw_score": 6.0, "mean_score": 1.5}, abs=1e-6
    )


def test_compass_31_relies_on_item_bounds() -> None:
    items: list[dict[str, Any]] = [
        {"response": 3},
        {"response": 1, "reverse": True},
        {"response": 7, "reverse": True, "min": 0, "max": 10},
        {"response": 1, "reverse": True, "min": 0},
    ]
    metrics = score_task("compass-31", items).metrics
    assert metrics == pytest.approx(
        {"n_items": 4, "n_answered": 2, "raw_score": 6.0, "mean_score": 3.0}, abs=1e-6
    )


def test_partial_item_bounds_complete_from_the_defaults() -> None:
    metrics = score_task("facs", [{"response": 6, "max": 6, "reverse": True}]).metrics
    assert metrics["raw_score"] == 0.0


@pytest.mark.parametrize("instrument", sorted(DEFAULT_SCALE_BOUNDS))
def test_nothing_answered(instrument: str) -> None:
    items: list[dict[str, Any]] = [{"response": None}, {"response": "3"}, {"response": True}, {}]
    assert score_task(instrument, items).metrics == {
        "n_items": 4,
        "n_answered": 0,
        "raw_score": None,
        "mean_score": None,
    }


def test_promis_and_brain_fog_default_to_zero_to_four() -> None:
    for instrument in ("promis-pediatric-profile-25", "brain-fog-scale"):
        metrics = score_task(
            instrument, [{"response": 0, "reverse": True}, {"response": 4}]
        ).metrics
        assert metrics["raw_score"] == 8.0
