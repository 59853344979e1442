"""Asking the dispatcher to run now, rather than at beat's next tick, when notifications become
due (`NOTIFICATIONS_DUE`, emitted after the commit that wrote them).

The API process and the workers register the application to send through: `create_app` with one
built from its settings, a worker with its own. A kick that cannot be sent (the broker is down)
is logged and dropped: beat's next tick finds the rows anyway, since they are in the database.
"""

from __future__ import annotations

import asyncio
from typing import Any

from app.config import Settings
from app.core.events import DomainEvent, subscribe
from app.core.logging import get_logger
from app.services.notifications.scheduling import NOTIFICATIONS_DUE
from app.workers.queues import REMINDERS
from app.workers.tasks import DISPATCH_NOTIFICATIONS_TASK

logger = get_logger(__name__)


class _Kicker:
    def __init__(self, settings: Settings, sender: Any | None) -> None:
        self.settings = settings
        self._sender = sender  # a Celery application (untyped); made at the first kick if None

    def send(self) -> None:
        # Imported here, not at the top: the module builds its own application from the
        # environment when imported, which the API process needs only once it kicks (and the
        # Celery application module imports this one).
        from app.workers.celery_app import create_celery_app, prepare_embedded_broker

        if self._sender is None:
            self._sender = create_celery_app(self.settings)
        # The embedded broker's folders, made when first needed: an API whose storage is
        # broken still starts (and health says what is wrong).
        prepare_embedded_broker(self.settings)
        # Without retries: a broker that is down costs one connection timeout, not a series.
        self._sender.send_task(
            DISPATCH_NOTIFICATIONS_TASK,
            queue=REMINDERS,
            retry=False,
            expires=self.settings.NOTIFICATION_DISPATCH_INTERVAL_SECONDS,
        )


_kicker: _Kicker | None = None


def enable_dispatch_kicks(settings: Settings, sender: Any | None = None) -> None:
    """Send kicks from now on, in this process, through `sender` (a Celery application) or one
    built from `settings` at the first kick."""
    global _kicker
    _kicker = _Kicker(settings, sender)


async def _kick(_: DomainEvent) -> None:
    kicker = _kicker
    if kicker is None:
        return
    try:
        # kombu publishes synchronously: off the event loop.
        await asyncio.to_thread(kicker.send)
    except Exception as exc:
        logger.warning("notification_dispatch_kick_failed", error=type(exc).__name__)


subscribe(NOTIFICATIONS_DUE, _kick)
