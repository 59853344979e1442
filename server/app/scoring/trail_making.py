"""trail-making: one trial per part (`A`, `B`); `rt` is the completion time in ms.

If a part appears more than once among the scored trials, the last one submitted stands (a
restarted part replaces the earlier attempt). A negative completion time is unusable and treated
as missing; `b_over_a` is null when `time_a` is 0 or either time is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from app.scoring.base import Scorer
from app.scoring.common import (
    Metrics,
    Trial,
    as_count,
    as_label,
    difference,
    finite_or_none,
    response_rt,
    scored_trials,
)

PARTS: Final = ("a", "b")


def _completion_time(trial: Trial | None) -> float | None:
    if trial is None:
        return None
    time = response_rt(trial)
    return time if time is not None and time >= 0 else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return finite_or_none(numerator / denominator)


def trail_making_metrics(trials: Sequence[Trial]) -> Metrics:
    last_trial_of_part: dict[str, Trial] = {}
    for trial in scored_trials(trials):
        part = as_label(trial.get("part"))
        if part in PARTS:
            last_trial_of_part[part] = trial
    part_a = last_trial_of_part.get("a")
    part_b = last_trial_of_part.get("b")
    time_a = _completion_time(part_a)
    time_b = _completion_time(part_b)
    return {
        "time_a": time_a,
        "time_b": time_b,
        "errors_a": as_count(part_a.get("errors")) if part_a is not None else None,
        "errors_b": as_count(part_b.get("errors")) if part_b is not None else None,
        "b_minus_a": difference(time_b, time_a),
        "b_over_a": _ratio(time_b, time_a),
    }


SCORER: Final = Scorer(
    name="trail-making",
    version="trail-making/1.0.0",
    compute_metrics=trail_making_metrics,
    # A completion time is no reaction time: no anticipations, no timeouts.
    measures_reaction_time=False,
    count_timeouts=None,
)
