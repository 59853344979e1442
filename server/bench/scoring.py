"""Scoring and flags of one task, in process: the per-trial Python of every submission.

    python -m bench.scoring [--trials 500] [--repeats 15]

For each task of the submission benchmark (bench/submit.py: the same ten tasks and the same
generated trials, validated by the submit model as the server does), scores the task and
computes its flags, the work `POST /api/submit` does per task. Prints the CPU time per task, the
minimum and the median of `--repeats` rounds: the minimum is the figure to compare between two
versions of the code, since other work on the machine only ever adds to it. Needs no database.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from typing import Any

from app.schemas.assessments import SubmitRequest
from app.scoring.flags import task_flags
from app.scoring.registry import score_task
from bench.submit import TASKS, body_for

ROUNDS_PER_REPEAT = 10


def validated_trials(trials: int) -> dict[str, list[dict[str, Any]]]:
    session_id = str(uuid.uuid4())
    found: dict[str, list[dict[str, Any]]] = {}
    for seed, task in enumerate(TASKS):
        payload = SubmitRequest.model_validate_json(body_for(session_id, task, trials, seed))
        found[task] = [dict(trial) for trial in payload.trials]
    return found


def score_all(trials_by_task: dict[str, list[dict[str, Any]]]) -> None:
    for task, trials in trials_by_task.items():
        score = score_task(task, trials)
        task_flags(task, trials, score, chance_accuracy=0.5, client_summary=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    trials_by_task = validated_trials(args.trials)
    for _ in range(ROUNDS_PER_REPEAT):  # warm up: imports, caches, the allocator
        score_all(trials_by_task)
    per_task_ms = []
    for _ in range(args.repeats):
        started = time.process_time()
        for _ in range(ROUNDS_PER_REPEAT):
            score_all(trials_by_task)
        elapsed = time.process_time() - started
        per_task_ms.append(elapsed * 1000 / (ROUNDS_PER_REPEAT * len(trials_by_task)))
    print(
        f"scoring + flags, {args.trials} trials, {len(trials_by_task)} tasks: "
        f"min {min(per_task_ms):.3f} ms, median {statistics.median(per_task_ms):.3f} ms per task "
        f"({args.repeats} repeats)"
    )


if __name__ == "__main__":
    main()
