"""Which of a task's metrics a report shows: its key metrics, the main one first.

The scorers store many metrics per task (counts, per-condition values); a report shows the few
a reader compares across visits. Scorers with a well-known summary have theirs named here; other
tasks use the first of the generic ones they have. The main metric (the first) is the one the
study report's histograms show.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from app.catalogue import Domain, UnknownModuleError, get_module

MAX_KEY_METRICS = 4

_BY_TASK: Mapping[str, tuple[str, ...]] = {
    "attention-network-test": ("executive", "alerting", "orienting", "accuracy"),
    "cpt-go-nogo": ("d_prime", "hit_rate", "false_alarm_rate", "mean_rt_hits"),
    "n-back": ("d_prime", "accuracy", "d_prime_1", "d_prime_2"),
    "stroop": ("interference_rt", "accuracy", "mean_rt_incongruent", "mean_rt_congruent"),
    "flanker": ("interference_rt", "accuracy", "mean_rt_incongruent", "mean_rt_congruent"),
    "trail-making": ("b_minus_a", "time_a", "time_b", "errors_b"),
    "digit-span": ("max_span_forward", "max_span_backward", "total_correct"),
}
_GENERIC = ("median_rt", "accuracy", "mean_rt", "sd_rt", "mean_score", "raw_score")

OTHER_DOMAIN = "other"


def number(value: Any) -> float | None:
    """A finite number, or None (booleans, text, NaN and infinities are not metrics to plot)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def task_name(task: str) -> str:
    try:
        return get_module(task).name
    except UnknownModuleError:
        return task


def task_domain(task: str) -> str:
    try:
        return get_module(task).domain.value
    except UnknownModuleError:
        return OTHER_DOMAIN


def domain_title(domain: str) -> str:
    if domain == Domain.PATIENT_REPORTED_OUTCOME:
        return "Patient-reported outcomes"
    return domain.replace("_", " ").capitalize()


def key_metrics(task: str, scores: Sequence[Mapping[str, Any]]) -> list[str]:
    """Up to MAX_KEY_METRICS metrics that hold a number in at least one of `scores`."""
    present = {
        name for score in scores for name, value in score.items() if number(value) is not None
    }
    wanted = [name for name in (*_BY_TASK.get(task, ()), *_GENERIC) if name in present]
    chosen = list(dict.fromkeys(wanted))[:MAX_KEY_METRICS]
    if not chosen:
        # A task no rule knows: its first metrics by name, counts last.
        chosen = sorted(present, key=lambda name: (name.startswith("n_"), name))[:MAX_KEY_METRICS]
    return chosen


def unit(metric: str) -> str:
    """The unit the metric's name implies (docs/exports.md, codebook)."""
    if metric.endswith("_rt") or "_rt_" in metric or metric.startswith("rt_"):
        return "ms"
    if metric in ("alerting", "orienting", "executive", "b_minus_a", "time_a", "time_b"):
        return "ms"
    if metric.startswith("accuracy") or metric.endswith("_rate"):
        return "proportion"
    return ""
