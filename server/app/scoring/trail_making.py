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
    as_number,
    difference,
    finite_or_none,
    scored_trials,
)
from app.scoring.trial_format import TrialFormat, count_field, label_field, rt_field

PART: Final = label_field("part", ("A", "B"), description="Which part of the test the trial is.")


def _completion_time(value: object) -> float | None:
    time = as_number(value)
    return time if time is not None and time >= 0 else None


TRIAL_FORMAT: Final = TrialFormat(
    description="One trial per part: its completion time and its errors.",
    fields=(
        PART,
        rt_field(
            description="Completion time of the part, in ms.", read=_completion_time, required=True
        ),
        count_field("errors", description="Errors made in the part.", read=as_count),
    ),
    example=(
        {"part": "A", "rt": 28450.5, "errors": 0},
        {"part": "B", "rt": 61230.25, "errors": 1},
    ),
)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return finite_or_none(numerator / denominator)


def trail_making_metrics(trials: Sequence[Trial]) -> Metrics:
    last_trial_of_part: dict[str, Trial] = {}
    for trial in scored_trials(trials):
        part = PART.read(trial.get("part"))
        if part is not None:
            last_trial_of_part[part] = trial
    part_a = last_trial_of_part.get("a")
    part_b = last_trial_of_part.get("b")
    time_a = _completion_time(part_a.get("rt")) if part_a is not None else None
    time_b = _completion_time(part_b.get("rt")) if part_b is not None else None
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
    trial_format=TRIAL_FORMAT,
)
