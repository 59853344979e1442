"""attention-network-test metrics, computed by hand from docs/scoring.md."""

from __future__ import annotations

from typing import Any

import pytest

from app.scoring import score_task


def test_network_contrasts() -> None:
    trials: list[dict[str, Any]] = [
        {"cue": "none", "flanker": "congruent", "rt": 500, "correct": True},
        {"cue": "none", "flanker": "incongruent", "rt": 600, "correct": True},
        {"cue": "double", "flanker": "congruent", "rt": 450, "correct": True},
        {"cue": "double", "flanker": "incongruent", "rt": 550, "correct": True},
        {"cue": "Center", "flanker": "congruent", "rt": 460, "correct": True},
        {"cue": "center", "flanker": "incongruent", "rt": 560, "correct": True},
        {"cue": "spatial", "flanker": "congruent", "rt": 420, "correct": True},
        {"cue": "spatial", "flanker": "incongruent", "rt": 520, "correct": True},
        {"cue": "none", "flanker": "incongruent", "rt": 900, "correct": False},
        {"cue": "none", "flanker": "congruent", "rt": 100, "correct": True, "is_practice": True},
    ]
    # none 550, double 500, center 510, spatial 470; congruent 457.5, incongruent 557.5.
    assert score_task("attention-network-test", trials).metrics == pytest.approx(
        {
            "alerting": 50.0,
            "orienting": 40.0,
            "executive": 100.0,
            "accuracy": 8 / 9,
            "mean_rt": 507.5,
        },
        abs=1e-6,
    )


def test_missing_cues_give_null_contrasts() -> None:
    trials: list[dict[str, Any]] = [
        {"cue": "none", "flanker": "congruent", "rt": 500, "correct": True},
        {"flanker": "incongruent", "rt": 600, "correct": True},
        {"cue": "double", "rt": 80, "correct": True},
    ]
    metrics = score_task("attention-network-test", trials).metrics
    assert metrics["alerting"] is None
    assert metrics["orienting"] is None
    assert metrics["executive"] == 100.0
    assert metrics["accuracy"] == 1.0
    assert metrics["mean_rt"] == 550.0


def test_no_responses() -> None:
    metrics = score_task("ant", [{"cue": "none", "flanker": "congruent", "rt": None}]).metrics
    assert metrics == {
        "alerting": None,
        "orienting": None,
        "executive": None,
        "accuracy": 0.0,
        "mean_rt": None,
    }
