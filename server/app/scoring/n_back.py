"""n-back: respond when the stimulus matches the one n back, per load level.

Trials carry `level` and `condition` (`target|nontarget`); a response is a usable `rt`, the
client's `correct` is not consulted. Metrics are reported for each level present among the scored
trials (`hits_2`, `d_prime_2`, ...): a level that was not administered has no metrics rather than
zeros. A trial without a usable level (an integer from 0 to 9; 0-back is a common control
condition) or without a target/non-target condition cannot be judged and is left out, also from
the pooled `accuracy` and `d_prime`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Final

from app.scoring.base import Scorer
from app.scoring.common import (
    ExpectedResponses,
    Metrics,
    Trial,
    as_count,
    count_go_nogo,
    hit_rts,
    mean_or_none,
    scored_trials,
    target_kind,
    targets_expect_response,
)
from app.scoring.trial_format import TrialFormat, count_field, target_condition_field

MAX_LEVEL: Final = 9


def _level(value: object) -> int | None:
    level = as_count(value)
    return level if level is not None and level <= MAX_LEVEL else None


# Per level: (condition, rt) of each trial; one false alarm at 3-back.
_EXAMPLE_BLOCKS: Final = {
    1: (("nontarget", None), ("target", 512.4), ("nontarget", None), ("target", 488.1)),
    2: (("nontarget", None), ("target", 603.7), ("nontarget", None), ("target", 571.9)),
    3: (("target", 655.2), ("nontarget", 702.3), ("nontarget", None), ("target", 634.8)),
}

TRIAL_FORMAT: Final = TrialFormat(
    description=(
        "One stimulus per trial at load `level`; any usable `rt` is a response (null or absent:"
        " withheld). Correctness follows from `condition` and the response; `correct` is not"
        " read."
    ),
    fields=(
        count_field(
            "level",
            description="The load n of the trial (0-back is a control condition).",
            read=_level,
            maximum=MAX_LEVEL,
        ),
        target_condition_field(),
    ),
    example=tuple(
        {"level": level, "condition": condition, "rt": rt}
        for level, block in _EXAMPLE_BLOCKS.items()
        for condition, rt in block
    ),
)


def _judgeable_trials_by_level(trials: Sequence[Trial]) -> dict[int, list[Trial]]:
    by_level: defaultdict[int, list[Trial]] = defaultdict(list)
    for trial in scored_trials(trials):
        level = _level(trial.get("level"))
        if level is not None and target_kind(trial) is not None:
            by_level[level].append(trial)
    return by_level


def _flatten(by_level: dict[int, list[Trial]]) -> list[Trial]:
    return [trial for level_trials in by_level.values() for trial in level_trials]


def n_back_metrics(trials: Sequence[Trial]) -> Metrics:
    by_level = _judgeable_trials_by_level(trials)
    metrics: Metrics = {}
    for level in sorted(by_level):
        counts = count_go_nogo(by_level[level])
        metrics[f"hits_{level}"] = counts.hits
        metrics[f"false_alarms_{level}"] = counts.false_alarms
        metrics[f"accuracy_{level}"] = counts.accuracy
        metrics[f"d_prime_{level}"] = counts.d_prime
        metrics[f"mean_rt_hits_{level}"] = mean_or_none(hit_rts(by_level[level]))
    pooled = count_go_nogo(_flatten(by_level))
    metrics["accuracy"] = pooled.accuracy
    metrics["d_prime"] = pooled.d_prime
    return metrics


def _count_timeouts(trials: Sequence[Trial]) -> ExpectedResponses | None:
    # The same trials as the metrics: a target without a usable level is not judged.
    return targets_expect_response(_flatten(_judgeable_trials_by_level(trials)))


SCORER: Final = Scorer(
    name="n-back",
    version="n-back/1.0.0",
    compute_metrics=n_back_metrics,
    measures_reaction_time=True,
    count_timeouts=_count_timeouts,
    trial_format=TRIAL_FORMAT,
)
