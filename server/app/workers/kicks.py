"""Asking a worker to run a dispatcher now, after a commit that made work due, rather than at
beat's next tick.

Three after-commit events kick dispatchers: `outbox.written` (webhook deliveries and REDCap
pushes: one task per kind of destination, each on its own queue), `notifications.due` (reminders,
resends) and `exports.queued` (export jobs). The API process starts the kicks in its lifespan; a
worker starts them too, since a task (a scan) can make notifications due.

A kick never waits on the broker in the caller: it raises a flag, and a thread of the kicker's own
publishes one message per burst of commits (commits that happen before the message leaves share
it, since the run it starts sees all of them). A kick that cannot be sent (the broker is down) is
logged and dropped: the rows are in the database, and beat's next tick finds them.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from celery import Celery

from app.config import Settings
from app.core.events import DomainEvent, subscribe, unsubscribe
from app.core.logging import get_logger
from app.services.exports.jobs import EXPORTS_QUEUED
from app.services.notifications.scheduling import NOTIFICATIONS_DUE
from app.services.outbox.writer import OUTBOX_WRITTEN
from app.workers.queues import EXPORTS, REDCAP, REMINDERS, WEBHOOKS
from app.workers.tasks import (
    DISPATCH_NOTIFICATIONS_TASK,
    DISPATCH_REDCAP_TASK,
    DISPATCH_WEBHOOKS_TASK,
    RUN_EXPORTS_TASK,
)

logger = get_logger(__name__)

# A kick nobody ran for this long is useless: beat has sent a scan since.
KICK_EXPIRES_MIN_SECONDS = 30.0
# How long closing waits for a message on its way.
CLOSE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class KickTarget:
    task_name: str
    queue: str
    expires_seconds: float


class _Sender:
    """The Celery application kicks go through: the worker's own, or one made at the first kick
    (the API needs none until then, and a broken broker must not stop it from starting)."""

    def __init__(self, settings: Settings, celery: Celery | None) -> None:
        self._settings = settings
        self._celery = celery
        self._owned = celery is None
        self._lock = threading.Lock()

    def send(self, target: KickTarget) -> None:
        # Imported here: the Celery application module starts the kicks in a worker.
        from app.workers.celery_app import create_celery_app, prepare_embedded_broker

        with self._lock:
            if self._celery is None:
                self._celery = create_celery_app(self._settings)
            celery = self._celery
        # The embedded broker's folders, made when first needed.
        prepare_embedded_broker(self._settings)
        # Without retries: a broker that is down costs one connection timeout, not a series.
        celery.send_task(
            target.task_name,
            queue=target.queue,
            retry=False,
            expires=max(target.expires_seconds, KICK_EXPIRES_MIN_SECONDS),
        )

    def close(self) -> None:
        with self._lock:
            if self._owned and self._celery is not None:
                self._celery.close()
                self._celery = None


class TaskKicker:
    """Sends the targets' tasks whenever asked, one message each per burst of kicks."""

    def __init__(self, targets: tuple[KickTarget, ...], sender: _Sender) -> None:
        self.targets = targets
        self._sender = sender
        self._condition = threading.Condition()
        self._requested = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._thread_pid = 0

    async def __call__(self, _event: DomainEvent) -> None:
        self.kick()

    def kick(self) -> None:
        with self._condition:
            if self._stopping:
                return
            # A forked worker child inherits the object but not the thread.
            if self._thread is None or self._thread_pid != os.getpid():
                self._thread = threading.Thread(
                    target=self._run, name=f"kick-{self.targets[0].task_name}", daemon=True
                )
                self._thread_pid = os.getpid()
                self._thread.start()
            self._requested = True
            self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._requested and not self._stopping:
                    self._condition.wait()
                # Cleared before sending: a commit from now on needs a message of its own.
                requested, self._requested = self._requested, False
                stopping = self._stopping
            if requested:
                # One run per kind of destination; each finds nothing quickly when none is due.
                for target in self.targets:
                    try:
                        self._sender.send(target)
                    except Exception as exc:
                        logger.warning(
                            "dispatch_kick_failed", task=target.task_name, error=type(exc).__name__
                        )
            if stopping:
                return

    def close(self) -> None:
        """Let a message on its way leave, then stop the thread."""
        with self._condition:
            self._stopping = True
            self._condition.notify()
            thread = self._thread if self._thread_pid == os.getpid() else None
        if thread is not None:
            thread.join(CLOSE_TIMEOUT_SECONDS)


class DispatchKicks:
    """The kicks of one process, subscribed to their events until `close`."""

    def __init__(self, settings: Settings, celery: Celery | None = None) -> None:
        self._sender = _Sender(settings, celery)
        self._subscriptions = {
            OUTBOX_WRITTEN: TaskKicker(
                (
                    KickTarget(DISPATCH_WEBHOOKS_TASK, WEBHOOKS, settings.OUTBOX_SCAN_SECONDS),
                    KickTarget(DISPATCH_REDCAP_TASK, REDCAP, settings.OUTBOX_SCAN_SECONDS),
                ),
                self._sender,
            ),
            NOTIFICATIONS_DUE: TaskKicker(
                (
                    KickTarget(
                        DISPATCH_NOTIFICATIONS_TASK,
                        REMINDERS,
                        settings.NOTIFICATION_DISPATCH_INTERVAL_SECONDS,
                    ),
                ),
                self._sender,
            ),
            EXPORTS_QUEUED: TaskKicker(
                (KickTarget(RUN_EXPORTS_TASK, EXPORTS, settings.EXPORT_SCAN_SECONDS),),
                self._sender,
            ),
        }
        for event_name, kicker in self._subscriptions.items():
            subscribe(event_name, kicker)

    def close(self) -> None:
        for event_name, kicker in self._subscriptions.items():
            unsubscribe(event_name, kicker)
            kicker.close()
        self._sender.close()


_worker_kicks: DispatchKicks | None = None


def start_worker_kicks(settings: Settings, celery: Celery) -> None:
    """In a worker or beat process: kicks through its own application, for the process's life."""
    global _worker_kicks
    if _worker_kicks is None:
        _worker_kicks = DispatchKicks(settings, celery)
