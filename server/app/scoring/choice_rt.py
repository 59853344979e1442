"""choice-rt: pick the odd one out; RT statistics use correct responses only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from app.scoring.base import Scorer
from app.scoring.common import (
    Metrics,
    Trial,
    accuracy,
    count_anticipations,
    every_trial_expects_response,
    rt_statistics,
    scored_trials,
)


def choice_rt_metrics(trials: Sequence[Trial]) -> Metrics:
    scored = scored_trials(trials)
    return {
        "n_trials": len(scored),
        "accuracy": accuracy(scored),
        **rt_statistics(scored, correct_only=True),
        "n_anticipations": count_anticipations(scored),
    }


SCORER: Final = Scorer(
    name="choice-rt",
    version="choice-rt/1.0.0",
    compute_metrics=choice_rt_metrics,
    measures_reaction_time=True,
    count_timeouts=every_trial_expects_response,
)
