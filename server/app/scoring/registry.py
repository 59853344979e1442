"""Which scorer scores which task, and which task id a client's task name means."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

from app.core.task_ids import TASK_ALIASES
from app.scoring import (
    ant,
    choice_rt,
    cpt,
    digit_span,
    generic,
    interference,
    n_back,
    pro,
    simple_rt,
    trail_making,
)
from app.scoring.base import Scorer, TaskScore
from app.scoring.common import Trial

SCORERS_BY_TASK: Final[Mapping[str, Scorer]] = MappingProxyType(
    {
        "simple-rt": simple_rt.SCORER,
        "choice-rt": choice_rt.SCORER,
        "cpt-go-nogo": cpt.SCORER,
        "n-back": n_back.SCORER,
        "digit-span": digit_span.SCORER,
        "trail-making": trail_making.SCORER,
        "flanker": interference.SCORER,
        "stroop": interference.SCORER,
        "attention-network-test": ant.SCORER,
        **pro.SCORERS,
    }
)

SCORER_VERSIONS: Final[Mapping[str, str]] = MappingProxyType(
    {scorer.name: scorer.version for scorer in (*SCORERS_BY_TASK.values(), generic.SCORER)}
)


def _lookup_key(task: str) -> str:
    return task.strip().lower().replace("_", "-")


def canonical_task_id(task: str) -> str:
    """The registered id `task` names (`cpt`, ` Simple_RT` ...); any other id comes back as is."""
    key = _lookup_key(task)
    if key in SCORERS_BY_TASK:
        return key
    return TASK_ALIASES.get(key.replace("-", ""), task)


def registered_task_ids() -> tuple[str, ...]:
    """Task ids with a dedicated scorer; every other task is scored by the generic one."""
    return tuple(SCORERS_BY_TASK)


def scorer_for(task: str) -> Scorer:
    return SCORERS_BY_TASK.get(canonical_task_id(task), generic.SCORER)


def score_task(task: str, trials: Sequence[Trial]) -> TaskScore:
    """Score one task's trials (the caller groups a submission's trials by task)."""
    task_id = canonical_task_id(task)
    scorer = scorer_for(task_id)
    return TaskScore(
        task=task_id,
        scorer=scorer.name,
        scorer_version=scorer.version,
        metrics=scorer.compute_metrics(trials),
    )
