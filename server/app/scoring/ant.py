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
    difference,
    every_trial_expects_response,
    mean_or_none,
    scored_trials,
    statistic_rts,
)
from app.scoring.interference import CONGRUENCY_LABELS
from app.scoring.trial_format import TrialField, TrialFormat, correct_field, label_field

CUE_LABELS: Final = ("none", "center", "double", "spatial")
CUE: Final = label_field("cue", CUE_LABELS, description="The cue before the target.")
FLANKER: Final = label_field(
    "flanker",
    CONGRUENCY_LABELS,
    description="Whether the flanking arrows point the target's way (`neutral`: dashes).",
)

# Milliseconds added to a base time per cue and per flanker, so each network shows an effect.
_CUE_DELAYS_MS: Final = {"none": 48.3, "center": 21.7, "double": 9.1, "spatial": 0.0}
_FLANKER_DELAYS_MS: Final = {"congruent": 0.0, "incongruent": 87.9}

TRIAL_FORMAT: Final = TrialFormat(
    description=(
        "One cued flanker display per trial; `correct` says whether the central arrow's"
        " direction was reported, `rt` is the response time (null or absent on a timeout)."
    ),
    fields=(CUE, FLANKER, correct_field(required=True)),
    example=tuple(
        {
            "cue": cue,
            "flanker": flanker,
            "rt": round(503.2 + repetition * 11.3 + cue_delay + flanker_delay, 1),
            # One error, on a slow incongruent trial, as real data has.
            "correct": not (cue == "none" and flanker == "incongruent" and repetition == 1),
        }
        for repetition in range(2)
        for cue, cue_delay in _CUE_DELAYS_MS.items()
        for flanker, flanker_delay in _FLANKER_DELAYS_MS.items()
    ),
)


def _mean_rt_where(trials: Sequence[Trial], field: TrialField[str], label: str) -> float | None:
    matching = [trial for trial in trials if field.read(trial.get(field.name)) == label]
    return mean_or_none(statistic_rts(matching, correct_only=True))


def ant_metrics(trials: Sequence[Trial]) -> Metrics:
    scored = scored_trials(trials)
    return {
        "alerting": difference(
            _mean_rt_where(scored, CUE, "none"), _mean_rt_where(scored, CUE, "double")
        ),
        "orienting": difference(
            _mean_rt_where(scored, CUE, "center"), _mean_rt_where(scored, CUE, "spatial")
        ),
        "executive": difference(
            _mean_rt_where(scored, FLANKER, "incongruent"),
            _mean_rt_where(scored, FLANKER, "congruent"),
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
    trial_format=TRIAL_FORMAT,
)
