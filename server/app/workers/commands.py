"""The command lines of a worker and of beat, shared by `metricis worker|beat` and by
`metricis serve`, which starts the embedded worker as a child process."""

from __future__ import annotations

from collections.abc import Sequence

from app.workers.queues import QUEUES

CELERY_APP = "app.workers.celery_app"


def worker_arguments(
    *,
    queues: Sequence[str] = QUEUES,
    concurrency: int | None = None,
    with_beat: bool = False,
    log_level: str = "info",
) -> list[str]:
    arguments = ["worker", "--queues", ",".join(queues), "--loglevel", log_level]
    # Gossip and mingle exchange state between workers at start-up over broadcast: no task
    # needs them, and the embedded broker cannot broadcast.
    arguments += ["--without-gossip", "--without-mingle"]
    if concurrency is not None:
        arguments += ["--concurrency", str(concurrency)]
    if with_beat:
        arguments.append("--beat")
    return arguments


def beat_arguments(*, log_level: str = "info") -> list[str]:
    return ["beat", "--loglevel", log_level]
