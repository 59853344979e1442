"""Server-side scoring: pure functions from a task's trials to metrics and validity flags.

No I/O, no framework: the submission service calls `score_task`, `task_flags` and
`session_flags` and stores what they return. Definitions are in docs/scoring.md; the rules for
untrusted input are in `app.scoring.common`, the flag thresholds in `app.scoring.flags`, and the
trial fields each scorer reads (published by the module catalogue API) in
`app.scoring.trial_format`.
"""

from app.core.task_ids import TASK_ALIASES
from app.scoring.base import Scorer, TaskScore
from app.scoring.flags import (
    DEVICE_ESTIMATE_TOLERANCE,
    Flag,
    FlagCode,
    device_estimate_flag,
    session_flags,
    task_flags,
)
from app.scoring.registry import (
    SCORER_VERSIONS,
    canonical_task_id,
    registered_task_ids,
    score_task,
    scorer_for,
)

__all__ = [
    "DEVICE_ESTIMATE_TOLERANCE",
    "SCORER_VERSIONS",
    "TASK_ALIASES",
    "Flag",
    "FlagCode",
    "Scorer",
    "TaskScore",
    "canonical_task_id",
    "device_estimate_flag",
    "registered_task_ids",
    "score_task",
    "scorer_for",
    "session_flags",
    "task_flags",
]
