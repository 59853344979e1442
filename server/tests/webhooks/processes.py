"""Webhook worker processes for the tests: `metricis worker --queues webhooks`, each in a process
group of its own, with settings that let them reach the local receiver quickly."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.config import Settings
from tests.conftest import make_settings
from tests.webhooks.conftest import LOCAL_RECEIVER
from tests.workers.test_workers import METRICIS, SERVER_ROOT

WAIT_SECONDS = 60


def worker_settings(isolated: Settings, storage: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "WEBHOOK_ALLOWED_HOSTS": LOCAL_RECEIVER,
        "WEBHOOK_TIMEOUT_SECONDS": 2.0,
        "OUTBOX_LEASE_SECONDS": 4.0,
        "OUTBOX_RETRY_BASE_SECONDS": 0.2,
        "OUTBOX_RETRY_MAX_SECONDS": 1.0,
        "OUTBOX_MAX_ATTEMPTS": 10,
        **overrides,
    }
    return make_settings(isolated.DATABASE_URL, storage, **values)


def process_environment(settings: Settings) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.DATABASE_URL,
        "STORAGE_DIR": str(settings.STORAGE_DIR),
        "LOG_LEVEL": "warning",
        "WEBHOOK_ALLOWED_HOSTS": ",".join(settings.WEBHOOK_ALLOWED_HOSTS),
        "WEBHOOK_TIMEOUT_SECONDS": str(settings.WEBHOOK_TIMEOUT_SECONDS),
        "OUTBOX_LEASE_SECONDS": str(settings.OUTBOX_LEASE_SECONDS),
        "OUTBOX_RETRY_BASE_SECONDS": str(settings.OUTBOX_RETRY_BASE_SECONDS),
        "OUTBOX_RETRY_MAX_SECONDS": str(settings.OUTBOX_RETRY_MAX_SECONDS),
        "OUTBOX_MAX_ATTEMPTS": str(settings.OUTBOX_MAX_ATTEMPTS),
    }
    if settings.CELERY_BROKER_URL:
        env["CELERY_BROKER_URL"] = settings.CELERY_BROKER_URL
    return env


class Workers:
    """Worker processes, each the leader of its own process group (killed whole)."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, settings: Settings) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [METRICIS, "worker", "--queues", "webhooks", "--concurrency", "1"],
            cwd=SERVER_ROOT,
            env=process_environment(settings),
            start_new_session=True,
        )
        self.started.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=WAIT_SECONDS)

    def stop(self, process: subprocess.Popen[bytes]) -> int:
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=WAIT_SECONDS)


def running_workers() -> Iterator[Workers]:
    """For a fixture: the workers a test starts, killed if it failed before stopping them."""
    started = Workers()
    yield started
    for process in started.started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
