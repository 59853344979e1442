"""Asking a worker to send the outbox now, after a commit that wrote deliveries.

The API process registers a `DispatchKicker` for the `outbox.written` after-commit event
(app.main). It sends one dispatcher task per burst of commits, off the request's path: commits
that happen before the message leaves share it, since the run it starts sees all of them. A lost
kick (the broker is down) only delays delivery until beat's next scan.
"""

from __future__ import annotations

import asyncio
import threading

from celery import Celery

from app.config import Settings
from app.core.events import DomainEvent
from app.core.logging import get_logger
from app.workers.celery_app import create_celery_app, prepare_embedded_broker
from app.workers.tasks import OUTBOX_TASKS

logger = get_logger(__name__)

# A kick nobody ran for this long is useless: beat has sent a scan since.
KICK_EXPIRES_MIN_SECONDS = 30.0


class DispatchKicker:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._celery: Celery | None = None
        self._celery_lock = threading.Lock()
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    async def __call__(self, _event: DomainEvent) -> None:
        if self._scheduled:
            return
        self._scheduled = True
        task = asyncio.get_running_loop().create_task(self._send())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self) -> None:
        # Cleared before sending: a commit from now on needs a message of its own.
        self._scheduled = False
        try:
            await asyncio.to_thread(self._send_blocking)
        except Exception as exc:
            logger.warning("outbox_kick_failed", error=type(exc).__name__)

    def _send_blocking(self) -> None:
        with self._celery_lock:
            if self._celery is None:
                prepare_embedded_broker(self._settings)
                self._celery = create_celery_app(self._settings)
            celery = self._celery
        # One run per kind of destination; each finds nothing quickly when none is due.
        for task in OUTBOX_TASKS:
            celery.send_task(
                task, expires=max(self._settings.OUTBOX_SCAN_SECONDS, KICK_EXPIRES_MIN_SECONDS)
            )

    async def close(self) -> None:
        """Let messages on their way leave, then close the broker connections."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        if self._celery is not None:
            await asyncio.to_thread(self._celery.close)
