"""attention-network-test: cue conditions plus a flanker conflict, one network per contrast.

Trials carry `cue` (`none|center|double|spatial`) and `flanker` (`congruent|incongruent`; a
neutral flanker is fine too). Contrasts use means over correct trials with rt ≥ 100; `accuracy`
and `mean_rt` cover every scored trial whatever its cue or flanker.
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


def _mean_rt_where(trials: Sequence[Trial], field: str, label: str) -> float | None:
    matching = [trial for trial in trials if as_label(trial.get(field)) == label]
    return mean_or_none(statistic_rts(matching, correct_only=True))


def ant_metrics(trials: Sequence[Trial]) -> Metrics:
    scored = scored_trials(trials)
    return {
        "alerting": difference(
            _mean_rt_where(scored, "cue", "none"), _mean_rt_where(scored, "cue", "double")
        ),
        "orienting": difference(
            _mean_rt_where(scored, "cue", "center"), _mean_rt_where(scored, "cue", "spatial")
        ),
        "executive": difference(
            _mean_rt_where(scored, "flanker", "incongruent"),
            _mean_rt_where(scored, "flanker", "congruent"),
        ),
        "accuracy": accuracy(scored),
        "mean_rt": mean_or_none(statistic_rts(scored, correct_only=True)),
    }


SCORER: Final = Scorer(
    name="attention-network-test",
    version="attention-network-test/1.0.0",
    compute_metrics=ant_metrics,
    measures_reaction_time=True,
    count_timeouts=every_trial_expects_response,
)
