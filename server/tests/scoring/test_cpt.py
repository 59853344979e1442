"""cpt-go-nogo metrics, computed by hand from docs/scoring.md."""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import pytest

from app.scoring import score_task

z = NormalDist().inv_cdf


def _trials(condition: str, count: int, rt: float | None) -> list[dict[str, Any]]:
    return [{"task": "cpt-go-nogo", "condition": condition, "rt": rt} for _ in range(count)]


def test_d_prime_of_18_hits_in_20_and_8_false_alarms_in_80() -> None:
    trials: list[dict[str, Any]] = [
        *_trials("target", 9, 300),
        *_trials("Go", 9, 500),
        *_trials("target", 2, None),
        *_trials("nontarget", 8, 350),
        *_trials("NOGO", 72, None),
        *_trials("target", 5, 300.0),
    ]
    for practice_trial in trials[-5:]:
        practice_trial["is_practice"] = True
    hit_z, false_alarm_z = z(18.5 / 21), z(8.5 / 81)
    # Hit RTs: nine at 300 and nine at 500, mean 400, each 100 away from it.
    assert score_task("cpt-go-nogo", trials).metrics == pytest.approx(
        {
            "n_targets": 20,
            "n_nontargets": 80,
            "hits": 18,
            "omissions": 2,
            "commissions": 8,
            "correct_rejections": 72,
            "hit_rate": 0.9,
            "false_alarm_rate": 0.1,
            "accuracy": 0.9,
            "mean_rt_hits": 400.0,
            "sd_rt_hits": math.sqrt(18 * 100**2 / 17),
            "d_prime": hit_z - false_alarm_z,
            "criterion": -(hit_z + false_alarm_z) / 2,
        },
        abs=1e-6,
    )


def test_alias_cpt_scores_as_cpt_go_nogo() -> None:
    score = score_task("cpt", [*_trials("go", 1, 300), *_trials("nogo", 1, None)])
    assert (score.task, score.scorer, score.scorer_version) == (
        "cpt-go-nogo",
        "cpt-go-nogo",
        "cpt-go-nogo/1.0.0",
    )
    assert score.metrics["hits"] == 1


def test_one_target_only() -> None:
    trials: list[dict[str, Any]] = [
        *_trials("target", 1, 300),
        *_trials("nontarget", 1, 250),
        *_trials("nontarget", 2, None),
    ]
    metrics = score_task("cpt", trials).metrics
    assert metrics["hit_rate"] == 1.0
    assert metrics["false_alarm_rate"] == pytest.approx(1 / 3, abs=1e-6)
    assert metrics["accuracy"] == pytest.approx(3 / 4, abs=1e-6)
    assert metrics["mean_rt_hits"] == 300.0
    assert metrics["sd_rt_hits"] is None
    assert metrics["d_prime"] == pytest.approx(z(1.5 / 2) - z(1.5 / 4), abs=1e-6)


def test_no_responses() -> None:
    metrics = score_task(
        "cpt", [*_trials("target", 4, None), *_trials("nontarget", 6, None)]
    ).metrics
    assert (metrics["hits"], metrics["omissions"], metrics["commissions"]) == (0, 4, 0)
    assert metrics["correct_rejections"] == 6
    assert metrics["accuracy"] == pytest.approx(0.6, abs=1e-6)
    assert metrics["mean_rt_hits"] is None
    assert metrics["d_prime"] == pytest.approx(z(0.5 / 5) - z(0.5 / 7), abs=1e-6)


def test_anticipated_hits_count_as_hits_but_not_in_rt() -> None:
    metrics = score_task("cpt", [*_trials("target", 3, 50), *_trials("target", 1, 400)]).metrics
    assert metrics["hits"] == 4
    assert metrics["mean_rt_hits"] == 400.0


def test_no_targets_or_no_nontargets_give_no_d_prime() -> None:
    only_nontargets = score_task("cpt", _trials("nontarget", 5, None)).metrics
    assert (only_nontargets["hit_rate"], only_nontargets["d_prime"]) == (None, None)
    only_targets = score_task("cpt", _trials("target", 5, 300)).metrics
    assert (only_targets["false_alarm_rate"], only_targets["criterion"]) == (None, None)


def test_trials_without_usable_condition_are_not_judged() -> None:
    trials: list[dict[str, Any]] = [
        *_trials("target", 1, 300),
        {"condition": "distractor", "rt": 300},
        {"condition": None, "rt": None},
        {"rt": 300},
        {"condition": 1, "rt": 300},
    ]
    metrics = score_task("cpt", trials).metrics
    assert (metrics["n_targets"], metrics["n_nontargets"]) == (1, 0)
    assert metrics["accuracy"] == 1.0


def test_no_trials() -> None:
    metrics = score_task("cpt", []).metrics
    assert metrics["n_targets"] == 0
    assert metrics["accuracy"] is None
    assert metrics["d_prime"] is None
