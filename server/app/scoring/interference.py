"""flanker and stroop: congruent versus incongruent trials (neutral trials allowed).

`accuracy` covers every scored trial, neutral and unlabelled ones included, because correctness
does not depend on the condition; the per-condition metrics need a recognised `condition`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from app.scoring.base import Scorer
from app.scoring.common import (
    Metrics,
    Trial,
    accuracy,
    difference,
    every_trial_expects_response,
    mean_or_none,
    scored_trials,
    statistic_rts,
)
from app.scoring.trial_format import TrialFormat, correct_field, label_field

CONGRUENCY_LABELS: Final = ("congruent", "incongruent", "neutral")
CONDITION: Final = label_field(
    "condition",
    CONGRUENCY_LABELS,
    description="Whether the distractor agrees with the target (`neutral`: it says nothing).",
)

# (condition, rt, correct); the incongruent trials are slower and one of them is an error.
_EXAMPLE_TRIALS: Final = (
    ("congruent", 452.3, True),
    ("incongruent", 538.7, True),
    ("congruent", 441.9, True),
    ("incongruent", 561.2, False),
    ("incongruent", 549.4, True),
    ("congruent", 468.1, True),
    ("congruent", 437.6, True),
    ("incongruent", 527.9, True),
    ("congruent", 459.5, True),
    ("incongruent", 552.8, True),
)

TRIAL_FORMAT: Final = TrialFormat(
    description=(
        "One target with distractors per trial; `correct` says whether the response was right,"
        " `rt` is the response time (null or absent on a timeout)."
    ),
    fields=(CONDITION, correct_field(required=True)),
    example=tuple(
        {"condition": condition, "rt": rt, "correct": correct}
        for condition, rt, correct in _EXAMPLE_TRIALS
    ),
)


def _with_condition(trials: Sequence[Trial], condition: str) -> list[Trial]:
    return [trial for trial in trials if CONDITION.read(trial.get("condition")) == condition]


def interference_metrics(trials: Sequence[Trial]) -> Metrics:
    scored = scored_trials(trials)
    congruent = _with_condition(scored, "congruent")
    incongruent = _with_condition(scored, "incongruent")
    accuracy_congruent = accuracy(congruent)
    accuracy_incongruent = accuracy(incongruent)
    mean_rt_congruent = mean_or_none(statistic_rts(congruent, correct_only=True))
    mean_rt_incongruent = mean_or_none(statistic_rts(incongruent, correct_only=True))
    return {
        "accuracy": accuracy(scored),
        "accuracy_congruent": accuracy_congruent,
        "accuracy_incongruent": accuracy_incongruent,
        "mean_rt_congruent": mean_rt_congruent,
        "mean_rt_incongruent": mean_rt_incongruent,
        "interference_rt": difference(mean_rt_incongruent, mean_rt_congruent),
        "interference_accuracy": difference(accuracy_congruent, accuracy_incongruent),
    }


SCORER: Final = Scorer(
    name="interference",
    version="interference/1.0.0",
    compute_metrics=interference_metrics,
    measures_reaction_time=True,
    count_timeouts=every_trial_expects_response,
    trial_format=TRIAL_FORMAT,
)
