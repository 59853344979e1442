"""Writing events into the outbox, in the caller's transaction.

An event is written only when a destination wants it, with its deliveries beside it: the outbox
is the queue of work that must leave the server, not a log of everything that happened (the audit
trail is that). If the caller's transaction rolls back, the event and its deliveries go with it,
so nothing is ever announced about a change that was not stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import events as after_commit
from app.core.clock import utcnow
from app.core.json_values import to_json_value
from app.models.outbox import (
    DeliveryStatus,
    DestinationKind,
    EventType,
    OutboxDelivery,
    OutboxEvent,
)
from app.models.webhook import WebhookSubscription
from app.services.outbox.events import EVENT_VERSIONS

# Announced after the commit of a transaction that wrote deliveries: a worker should look for
# due deliveries now rather than at the next periodic scan (app.main kicks the dispatcher).
OUTBOX_WRITTEN = "outbox.written"


@dataclass(frozen=True, slots=True)
class NewEvent:
    type: EventType
    study_id: uuid.UUID
    payload: Mapping[str, Any]
    participant_id: uuid.UUID | None = None  # the participant the event is about, if any


async def emit(
    session: AsyncSession,
    event_type: EventType,
    study_id: uuid.UUID,
    payload: Mapping[str, Any],
    *,
    participant_id: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """Write one event for every destination that wants it; its id, or None when none does."""
    [event_id] = await emit_many(session, [NewEvent(event_type, study_id, payload, participant_id)])
    return event_id


async def emit_many(session: AsyncSession, events: Sequence[NewEvent]) -> list[uuid.UUID | None]:
    """`emit` for several events at once (a CSV import), in two multi-row inserts."""
    wanted_by = await _webhook_destinations(session, {event.study_id for event in events})
    ids: list[uuid.UUID | None] = []
    targeted: list[tuple[NewEvent, uuid.UUID, list[uuid.UUID]]] = []
    for event in events:
        subscriptions = [
            subscription_id
            for subscription_id, types in wanted_by.get(event.study_id, [])
            if event.type.value in types
        ]
        event_id = uuid.uuid4() if subscriptions else None
        ids.append(event_id)
        if event_id is not None:
            targeted.append((event, event_id, subscriptions))
    await _write(session, targeted)
    return ids


async def emit_to_subscription(
    session: AsyncSession, event: NewEvent, subscription_id: uuid.UUID
) -> uuid.UUID:
    """Write an event for one subscription only, whatever types it takes (the test event)."""
    event_id = uuid.uuid4()
    await _write(session, [(event, event_id, [subscription_id])])
    return event_id


async def _write(
    session: AsyncSession, targeted: Sequence[tuple[NewEvent, uuid.UUID, list[uuid.UUID]]]
) -> None:
    if not targeted:
        return
    now = utcnow()
    await session.execute(
        insert(OutboxEvent),
        [
            {
                "id": event_id,
                "type": event.type,
                "version": EVENT_VERSIONS[event.type],
                "study_id": event.study_id,
                "participant_id": event.participant_id,
                "payload": to_json_value(dict(event.payload)),
                "occurred_at": now,
            }
            for event, event_id, _ in targeted
        ],
    )
    await session.execute(
        insert(OutboxDelivery),
        [
            {
                "id": uuid.uuid4(),
                "event_id": event_id,
                "destination": DestinationKind.WEBHOOK,
                "subscription_id": subscription_id,
                "status": DeliveryStatus.PENDING,
                "attempts": 0,
                "round_attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for _, event_id, subscriptions in targeted
            for subscription_id in subscriptions
        ],
    )
    after_commit.emit(session, OUTBOX_WRITTEN, {})


async def _webhook_destinations(
    session: AsyncSession, study_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[tuple[uuid.UUID, frozenset[str]]]]:
    """The active subscriptions of these studies, with the event types each takes."""
    found: dict[uuid.UUID, list[tuple[uuid.UUID, frozenset[str]]]] = {}
    studies = list(study_ids)
    if not studies:
        return found
    rows = await session.execute(
        select(
            WebhookSubscription.study_id,
            WebhookSubscription.id,
            WebhookSubscription.event_types,
        ).where(WebhookSubscription.study_id.in_(studies), WebhookSubscription.active.is_(True))
    )
    for study_id, subscription_id, types in rows:
        found.setdefault(study_id, []).append((subscription_id, frozenset(types)))
    return found


async def forget_participant(session: AsyncSession, participant_id: uuid.UUID) -> int:
    """Erase the events about a participant whose data is erased, delivered or not (their
    deliveries and attempts go with them): scores must not leave the server after erasure."""
    result = await session.execute(
        delete(OutboxEvent).where(OutboxEvent.participant_id == participant_id)
    )
    return int(getattr(result, "rowcount", 0) or 0)
