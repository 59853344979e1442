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
    as_label,
    difference,
    every_trial_expects_response,
    mean_or_none,
    scored_trials,
    statistic_rts,
)


def _with_condition(trials: Sequence[Trial], condition: str) -> list[Trial]:
    return [trial for trial in trials if as_label(trial.get("condition")) == condition]


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
)
