"""One dispatcher run for webhooks: what the `webhooks` queue's task calls."""

from __future__ import annotations

from app.config import Settings
from app.core.security import FieldEncryptor
from app.services.outbox.dispatch import DispatchReport, RetryPolicy, SessionFactory, dispatch
from app.services.webhooks.delivery import webhook_client, webhook_destination


async def dispatch_webhooks(
    sessions: SessionFactory, settings: Settings, *, concurrency: int | None = None
) -> DispatchReport:
    """Send the due webhook deliveries until none is due or the run's time is up."""
    async with webhook_client(settings) as client:
        return await dispatch(
            sessions,
            webhook_destination(settings, FieldEncryptor.from_settings(settings), client),
            RetryPolicy.from_settings(settings),
            lease_seconds=settings.OUTBOX_LEASE_SECONDS,
            concurrency=concurrency or settings.OUTBOX_DISPATCH_CONCURRENCY,
            max_seconds=settings.OUTBOX_DISPATCH_MAX_SECONDS,
        )
