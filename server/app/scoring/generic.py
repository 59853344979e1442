"""Every task without a dedicated scorer: counts, accuracy and RT statistics by the general rules.

The task "has correctness" when some scored trial carries a boolean `correct`; then `accuracy`
is computed and RT statistics use correct trials only, otherwise `accuracy` is null.

A generic task may be of the respond-or-withhold kind (vigilance-cpt, for one), so a trial
without a response counts as a timeout only when it is not marked `correct: true`, and the check
applies only when the task records reaction times at all (some scored trial has a usable `rt`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from app.scoring.base import Scorer
from app.scoring.common import (
    ExpectedResponses,
    Metrics,
    Trial,
    accuracy,
    count_anticipations,
    count_responses,
    has_correctness,
    has_response,
    is_correct,
    rt_statistics,
    scored_trials,
)
from app.scoring.trial_format import TrialFormat, correct_field

TRIAL_FORMAT: Final = TrialFormat(
    description=(
        "One trial per response; `rt` is the response time (null or absent when none was"
        " given), `correct` whether the response was right, where the task has right answers."
        " Without any `correct`, accuracy is null and RT statistics use every response."
    ),
    fields=(correct_field(required=False),),
    example=tuple(
        {"rt": rt, "correct": correct}
        for rt, correct in (
            (812.4, True),
            (745.9, True),
            (903.2, True),
            (688.7, True),
            (1021.5, False),
            (776.3, True),
            (854.8, True),
            (731.1, True),
            (799.6, True),
            (869.2, True),
            (742.5, True),
            (818.9, True),
        )
    ),
)


def generic_metrics(trials: Sequence[Trial]) -> Metrics:
    scored = scored_trials(trials)
    with_correctness = has_correctness(scored)
    return {
        "n_trials": len(scored),
        "n_responses": count_responses(scored),
        "accuracy": accuracy(scored) if with_correctness else None,
        **rt_statistics(scored, correct_only=with_correctness),
        "n_anticipations": count_anticipations(scored),
    }


def _count_timeouts(trials: Sequence[Trial]) -> ExpectedResponses | None:
    scored = scored_trials(trials)
    if not any(has_response(trial) for trial in scored):
        return None
    correct_withholdings = sum(
        1 for trial in scored if not has_response(trial) and is_correct(trial)
    )
    expected = len(scored) - correct_withholdings
    return ExpectedResponses(expected=expected, missing=expected - count_responses(scored))


SCORER: Final = Scorer(
    name="generic",
    version="generic/1.0.0",
    compute_metrics=generic_metrics,
    measures_reaction_time=True,
    count_timeouts=_count_timeouts,
    trial_format=TRIAL_FORMAT,
)
