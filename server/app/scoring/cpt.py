"""cpt-go-nogo (alias `cpt`): respond to targets (`go`), withhold on non-targets (`nogo`).

Correctness comes from `condition` and whether `rt` is usable; the client's `correct` is not
consulted. A trial whose `condition` is neither target nor non-target cannot be judged and is
left out of every count, `accuracy` included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from app.scoring.base import Scorer
from app.scoring.common import (
    Metrics,
    Trial,
    count_go_nogo,
    hit_rts,
    mean_or_none,
    sample_sd_or_none,
    scored_trials,
    targets_expect_response,
)
from app.scoring.trial_format import TrialFormat, target_condition_field

_EXAMPLE_TARGETS: Final = {0: 402.7, 3: 377.1, 7: 451.9, 10: 389.3, 14: 420.6, 17: 366.2}
_EXAMPLE_COMMISSIONS: Final = {12: 289.3}

TRIAL_FORMAT: Final = TrialFormat(
    description=(
        "One stimulus per trial; any usable `rt` is a response (null or absent: withheld)."
        " Correctness follows from `condition` and the response; `correct` is not read."
    ),
    fields=(target_condition_field(),),
    example=tuple(
        {
            "condition": "target" if index in _EXAMPLE_TARGETS else "nontarget",
            "rt": _EXAMPLE_TARGETS.get(index, _EXAMPLE_COMMISSIONS.get(index)),
        }
        for index in range(20)
    ),
)


def cpt_metrics(trials: Sequence[Trial]) -> Metrics:
    scored = scored_trials(trials)
    counts = count_go_nogo(scored)
    rts_of_hits = hit_rts(scored)
    return {
        "n_targets": counts.targets,
        "n_nontargets": counts.nontargets,
        "hits": counts.hits,
        "omissions": counts.omissions,
        "commissions": counts.false_alarms,
        "correct_rejections": counts.correct_rejections,
        "hit_rate": counts.hit_rate,
        "false_alarm_rate": counts.false_alarm_rate,
        "accuracy": counts.accuracy,
        "mean_rt_hits": mean_or_none(rts_of_hits),
        "sd_rt_hits": sample_sd_or_none(rts_of_hits),
        "d_prime": counts.d_prime,
        "criterion": counts.criterion,
    }


SCORER: Final = Scorer(
    name="cpt-go-nogo",
    version="cpt-go-nogo/1.0.0",
    compute_metrics=cpt_metrics,
    measures_reaction_time=True,
    count_timeouts=targets_expect_response,
    trial_format=TRIAL_FORMAT,
)
