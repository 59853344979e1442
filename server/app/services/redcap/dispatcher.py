"""One dispatcher run for REDCap: what the `redcap` queue's task calls."""

from __future__ import annotations

from app.config import Settings
from app.core.security import FieldEncryptor
from app.services.outbox.dispatch import DispatchReport, RetryPolicy, SessionFactory, dispatch
from app.services.redcap.delivery import redcap_destination

# REDCap servers are institutional and often modest: a few imports at once is plenty.
REDCAP_CONCURRENCY = 4


def lease_seconds(settings: Settings) -> float:
    """Longer than a push can take (connecting, then waiting for the answer, each up to the
    timeout), so a slow push is never claimed by a second run while it is still under way."""
    return max(settings.OUTBOX_LEASE_SECONDS, 2 * settings.REDCAP_TIMEOUT_SECONDS + 1)


async def dispatch_redcap(
    sessions: SessionFactory, settings: Settings, *, concurrency: int | None = None
) -> DispatchReport:
    """Push the due REDCap deliveries until none is due or the run's time is up."""
    return await dispatch(
        sessions,
        redcap_destination(settings, FieldEncryptor.from_settings(settings)),
        RetryPolicy.from_settings(settings),
        lease_seconds=lease_seconds(settings),
        concurrency=concurrency or min(REDCAP_CONCURRENCY, settings.OUTBOX_DISPATCH_CONCURRENCY),
        max_seconds=settings.OUTBOX_DISPATCH_MAX_SECONDS,
    )
