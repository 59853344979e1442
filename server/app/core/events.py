"""Domain events raised inside a request's transaction and handled only after it commits.

Services call `emit(session, name, payload)`; the request's transaction scope dispatches the
collected events once the commit has succeeded (nothing is dispatched after a rollback), so a
handler never acts on data that was not stored. Handlers that must survive a crash belong in an
outbox table written in the same transaction; these in-process handlers are for work that can be
retried or recomputed (webhook fan-out, visit completion).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.logging import get_logger

logger = get_logger(__name__)

_PENDING_KEY = "metricis.pending_events"


@dataclass(frozen=True, slots=True)
class DomainEvent:
    name: str
    payload: dict[str, Any]


Handler = Callable[[DomainEvent], Awaitable[None]]
_handlers: dict[str, list[Handler]] = {}


def subscribe(name: str, handler: Handler) -> None:
    _handlers.setdefault(name, []).append(handler)


def unsubscribe(name: str, handler: Handler) -> None:
    """Remove a handler an application registered for its lifetime (tests start many)."""
    if handler in _handlers.get(name, []):
        _handlers[name].remove(handler)


def emit(session: AsyncSession, name: str, payload: dict[str, Any]) -> None:
    session.info.setdefault(_PENDING_KEY, []).append(DomainEvent(name, payload))


def emit_once(session: AsyncSession, name: str, payload: dict[str, Any]) -> None:
    """Emit unless an event of this name is already waiting for the commit: for a signal such as
    "work is due", where a thousand rows written in one transaction need one announcement."""
    pending: list[DomainEvent] = session.info.get(_PENDING_KEY, [])
    if not any(event.name == name for event in pending):
        emit(session, name, payload)


def discard_pending(session: AsyncSession) -> None:
    session.info.pop(_PENDING_KEY, None)


async def dispatch_pending(session: AsyncSession) -> None:
    events: list[DomainEvent] = session.info.pop(_PENDING_KEY, [])
    for event in events:
        for handler in _handlers.get(event.name, []):
            try:
                await handler(event)
            except Exception:
                # The data is committed; a failing handler must not turn the answer into a 500.
                logger.exception("event_handler_failed", event_name=event.name)
