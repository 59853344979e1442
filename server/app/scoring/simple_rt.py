"""simple-rt: one stimulus per trial, respond as fast as possible; a null rt is a timeout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from app.scoring.base import Scorer
from app.scoring.common import (
    ANTICIPATION_LIMIT_MS,
    Metrics,
    Trial,
    every_trial_expects_response,
    response_rt,
    rt_statistics,
    scored_trials,
)
from app.scoring.trial_format import TrialFormat

LAPSE_LIMIT_MS: Final = 500.0

TRIAL_FORMAT: Final = TrialFormat(
    description="One stimulus per trial; `rt` is the response time, null or absent on a timeout.",
    fields=(),
    example=tuple(
        {"rt": rt} for rt in (312.4, 287.9, 345.1, 298.6, 401.3, 276.8, 333.2, 359.7, 305.5, 291.0)
    ),
)


def simple_rt_metrics(trials: Sequence[Trial]) -> Metrics:
    scored = scored_trials(trials)
    response_rts = [rt for trial in scored if (rt := response_rt(trial)) is not None]
    return {
        "n_trials": len(scored),
        "n_responses": len(response_rts),
        "n_timeouts": len(scored) - len(response_rts),
        "n_anticipations": sum(1 for rt in response_rts if rt < ANTICIPATION_LIMIT_MS),
        # Simple RT has no wrong answer, so every response of at least 100 ms counts.
        **rt_statistics(scored, correct_only=False),
        "n_lapses": sum(1 for rt in response_rts if rt >= LAPSE_LIMIT_MS),
    }


SCORER: Final = Scorer(
    name="simple-rt",
    version="simple-rt/1.0.0",
    compute_metrics=simple_rt_metrics,
    measures_reaction_time=True,
    count_timeouts=every_trial_expects_response,
    trial_format=TRIAL_FORMAT,
)
