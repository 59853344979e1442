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
from app.scoring.trial_format import TrialFormat, correct_field

TRIAL_FORMAT: Final = TrialFormat(
    description=(
        "One display per trial; `correct` says whether the odd one out was picked, `rt` is the"
        " response time (null or absent on a timeout)."
    ),
    fields=(correct_field(required=True),),
    example=tuple(
        {"rt": rt, "correct": correct}
        for rt, correct in (
            (512.3, True),
            (478.9, True),
            (601.2, True),
            (455.7, False),
            (533.4, True),
            (497.1, True),
            (562.8, True),
            (489.5, True),
            (518.6, True),
            (541.0, True),
        )
    ),
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
    trial_format=TRIAL_FORMAT,
)
