"""The records a scorer is made of and produces."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.scoring.common import ExpectedResponses, Metrics, MetricsFunction, Trial
from app.scoring.trial_format import TrialFormat

TimeoutRule = Callable[[Sequence[Trial]], ExpectedResponses | None]


@dataclass(frozen=True, slots=True)
class TaskScore:
    task: str
    """Module id as scored, aliases resolved (`cpt` is scored as `cpt-go-nogo`)."""
    scorer: str
    scorer_version: str
    metrics: Metrics


@dataclass(frozen=True, slots=True)
class Scorer:
    """One task family's scoring: its metrics and which validity checks make sense for it."""

    name: str
    version: str
    compute_metrics: MetricsFunction
    measures_reaction_time: bool
    """Whether `rt` is a reaction time, so anticipations and timer resolution mean something."""
    count_timeouts: TimeoutRule | None
    """Which trials expected a response and got none; None where a missing rt is no timeout."""
    trial_format: TrialFormat
    """The trial fields `compute_metrics` reads, published and checked (see `trial_format`)."""
