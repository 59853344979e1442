"""digit-span: recall sequences of `span_length` digits, `forward` or `backward`.

A trial counts only with a recognised `direction`, so `total_correct` is always
`total_correct_forward + total_correct_backward`. A correct trial without a usable `span_length`
(a positive integer) still counts as correct but cannot raise the maximum span.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from app.scoring.base import Scorer
from app.scoring.common import Metrics, Trial, as_count, is_correct, scored_trials
from app.scoring.trial_format import TrialFormat, correct_field, count_field, label_field

DIRECTIONS: Final = ("forward", "backward")
DIRECTION: Final = label_field("direction", DIRECTIONS, description="Recall order of the sequence.")


def _span_length(value: object) -> int | None:
    """A usable span length: a positive integer."""
    return as_count(value) or None


# (direction, span_length, correct), administered until both trials of a length fail.
_EXAMPLE_TRIALS: Final = (
    ("forward", 3, True),
    ("forward", 3, True),
    ("forward", 4, True),
    ("forward", 4, False),
    ("forward", 5, True),
    ("forward", 5, False),
    ("forward", 6, False),
    ("forward", 6, False),
    ("backward", 3, True),
    ("backward", 3, True),
    ("backward", 4, True),
    ("backward", 4, False),
    ("backward", 5, False),
    ("backward", 5, False),
)

TRIAL_FORMAT: Final = TrialFormat(
    description=(
        "One recalled sequence per trial; `correct` says whether it was recalled in the right"
        " order. `rt` is not read."
    ),
    fields=(
        DIRECTION,
        count_field(
            "span_length",
            description="Number of digits in the sequence.",
            read=_span_length,
            minimum=1,
        ),
        correct_field(required=True),
    ),
    example=tuple(
        {"direction": direction, "span_length": length, "correct": correct}
        for direction, length, correct in _EXAMPLE_TRIALS
    ),
)


def digit_span_metrics(trials: Sequence[Trial]) -> Metrics:
    correct_by_direction: dict[str, list[Trial]] = {direction: [] for direction in DIRECTIONS}
    for trial in scored_trials(trials):
        direction = DIRECTION.read(trial.get("direction"))
        if direction in correct_by_direction and is_correct(trial):
            correct_by_direction[direction].append(trial)
    metrics: Metrics = {}
    for direction, correct_trials in correct_by_direction.items():
        # A correct trial without a usable length counts as 0, which never beats a real span.
        metrics[f"max_span_{direction}"] = max(
            (_span_length(trial.get("span_length")) or 0 for trial in correct_trials), default=0
        )
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
    trial_format=TRIAL_FORMAT,
)
