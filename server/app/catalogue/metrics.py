"""Metric and scorer names shared by several modules (docs/scoring.md, metrics)."""

from __future__ import annotations

GENERIC_SCORER = "generic"
PRO_SCORER = "pro"

GENERIC_METRICS: tuple[str, ...] = (
    "n_trials",
    "n_responses",
    "n_anticipations",
    "accuracy",
    "mean_rt",
    "median_rt",
    "sd_rt",
)

PRO_METRICS: tuple[str, ...] = ("n_items", "n_answered", "raw_score", "mean_score")

CONFLICT_METRICS: tuple[str, ...] = (
    "accuracy",
    "accuracy_congruent",
    "accuracy_incongruent",
    "mean_rt_congruent",
    "mean_rt_incongruent",
    "interference_rt",
    "interference_accuracy",
)
"""Flanker and Stroop report the same congruency metrics."""
