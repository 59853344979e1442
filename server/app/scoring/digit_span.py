"""digit-span: recall sequences of `span_length` digits, `forward` or `backward`.

A trial counts only with a recognised `direction`, so `total_correct` is always
`total_correct_forward + total_correct_backward`. A correct trial without a usable `span_length`
(a positive integer) still counts as correct but cannot raise the maximum span.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from app.scoring.base import Scorer
from app.scoring.common import Metrics, Trial, as_count, as_label, is_correct, scored_trials

DIRECTIONS: Final = ("forward", "backward")


def _span_length(trial: Trial) -> int:
    """Usable span length, 0 when missing (0 never beats a real span)."""
    return as_count(trial.get("span_length")) or 0


def digit_span_metrics(trials: Sequence[Trial]) -> Metrics:
    correct_by_direction: dict[str, list[Trial]] = {direction: [] for direction in DIRECTIONS}
    for trial in scored_trials(trials):
        direction = as_label(trial.get("direction"))
        if direction in correct_by_direction and is_correct(trial):
            correct_by_direction[direction].append(trial)
    metrics: Metrics = {}
    for direction, correct_trials in correct_by_direction.items():
        metrics[f"max_span_{direction}"] = max(map(_span_length, correct_trials), default=0)
    for direction, correct_trials in correct_by_direction.items():
        metrics[f"total_correct_{direction}"] = len(correct_trials)
    metrics["total_correct"] = sum(
        len(correct_trials) for correct_trials in correct_by_direction.values()
    )
    return metrics


SCORER: Final = Scorer(
    name="digit-span",
    version="digit-span/1.0.0",
    compute_metrics=digit_span_metrics,
    # The rt of a whole recalled sequence is no reaction time, and there is no timeout.
    measures_reaction_time=False,
    count_timeouts=None,
)
