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

from sqlalchemy import bindparam, delete, insert, select
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
from app.models.redcap import RedcapProject
from app.models.webhook import WebhookSubscription
from app.services.outbox.events import EVENT_VERSIONS
from app.services.redcap.mapping import mapped_values

# Announced after the commit of a transaction that wrote deliveries: a worker should look for
# due deliveries now rather than at the next periodic scan (app.main kicks the dispatcher).
OUTBOX_WRITTEN = "outbox.written"


# The events REDCap receives (docs/redcap.md): a completed session's mapped scores.
REDCAP_EVENT_TYPES = frozenset({EventType.SESSION_COMPLETED})


@dataclass(frozen=True, slots=True)
class Targets:
    """Where one event goes: webhook subscriptions and REDCap projects."""

    subscriptions: list[uuid.UUID]
    redcap_projects: list[uuid.UUID]

    def __bool__(self) -> bool:
        return bool(self.subscriptions or self.redcap_projects)


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
    study_ids = {event.study_id for event in events}
    wanted_by = await _webhook_destinations(session, study_ids)
    redcap_studies = {event.study_id for event in events if event.type in REDCAP_EVENT_TYPES}
    projects = await _redcap_destinations(session, redcap_studies)
    ids: list[uuid.UUID | None] = []
    targeted: list[tuple[NewEvent, uuid.UUID, Targets]] = []
    for event in events:
        targets = Targets(
            subscriptions=[
                subscription_id
                for subscription_id, types in wanted_by.get(event.study_id, [])
                if event.type.value in types
            ],
            redcap_projects=_redcap_targets(event, projects.get(event.study_id, [])),
        )
        event_id = uuid.uuid4() if targets else None
        ids.append(event_id)
        if event_id is not None:
            targeted.append((event, event_id, targets))
    await _write(session, targeted)
    return ids


async def emit_to_subscription(
    session: AsyncSession, event: NewEvent, subscription_id: uuid.UUID
) -> uuid.UUID:
    """Write an event for one subscription only, whatever types it takes (the test event)."""
    event_id = uuid.uuid4()
    await _write(session, [(event, event_id, Targets([subscription_id], []))])
    return event_id


async def _write(
    session: AsyncSession, targeted: Sequence[tuple[NewEvent, uuid.UUID, Targets]]
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
                "destination": kind,
                "subscription_id": target if kind is DestinationKind.WEBHOOK else None,
                "redcap_project_id": target if kind is DestinationKind.REDCAP else None,
                "status": DeliveryStatus.PENDING,
                "attempts": 0,
                "round_attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for _, event_id, targets in targeted
            for kind, target in [
                *((DestinationKind.WEBHOOK, found) for found in targets.subscriptions),
                *((DestinationKind.REDCAP, found) for found in targets.redcap_projects),
            ]
        ],
    )
    after_commit.emit(session, OUTBOX_WRITTEN, {})


# Built once, with parameters: every accepted submission asks both (see `emit_many`).
_ACTIVE_SUBSCRIPTIONS = select(
    WebhookSubscription.study_id, WebhookSubscription.id, WebhookSubscription.event_types
).where(
    WebhookSubscription.study_id.in_(bindparam("studies", expanding=True)),
    WebhookSubscription.active.is_(True),
)
_REDCAP_PROJECTS = select(
    RedcapProject.study_id,
    RedcapProject.id,
    RedcapProject.site_id,
    RedcapProject.enabled,
    RedcapProject.field_mapping,
).where(RedcapProject.study_id.in_(bindparam("studies", expanding=True)))


async def _webhook_destinations(
    session: AsyncSession, study_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[tuple[uuid.UUID, frozenset[str]]]]:
    """The active subscriptions of these studies, with the event types each takes."""
    found: dict[uuid.UUID, list[tuple[uuid.UUID, frozenset[str]]]] = {}
    studies = list(study_ids)
    if not studies:
        return found
    rows = await session.execute(_ACTIVE_SUBSCRIPTIONS, {"studies": studies})
    for study_id, subscription_id, types in rows:
        found.setdefault(study_id, []).append((subscription_id, frozenset(types)))
    return found


@dataclass(frozen=True, slots=True)
class _RedcapDestination:
    project_id: uuid.UUID
    site_id: uuid.UUID | None
    enabled: bool
    field_mapping: dict[str, Any]


async def _redcap_destinations(
    session: AsyncSession, study_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[_RedcapDestination]]:
    """The REDCap projects of these studies, the study's own and the sites' overrides."""
    found: dict[uuid.UUID, list[_RedcapDestination]] = {}
    studies = list(study_ids)
    if not studies:
        return found
    rows = await session.execute(_REDCAP_PROJECTS, {"studies": studies})
    for study_id, project_id, site_id, enabled, mapping in rows:
        found.setdefault(study_id, []).append(
            _RedcapDestination(project_id, site_id, enabled, dict(mapping))
        )
    return found


def _redcap_targets(event: NewEvent, projects: Sequence[_RedcapDestination]) -> list[uuid.UUID]:
    """The project this event goes to: the participant's site's when the site has one (enabled
    or not: a disabled site sends nothing), else the study's; only when it is enabled and maps
    at least one of the event's scores."""
    if event.type not in REDCAP_EVENT_TYPES or not projects:
        return []
    site = event.payload.get("site_id")
    chosen = next((p for p in projects if p.site_id is not None and str(p.site_id) == site), None)
    if chosen is None:
        chosen = next((p for p in projects if p.site_id is None), None)
    if chosen is None or not chosen.enabled:
        return []
    if not mapped_values(event.payload, chosen.field_mapping):
        return []
    return [chosen.project_id]


async def forget_participant(session: AsyncSession, participant_id: uuid.UUID) -> int:
    """Erase the events about a participant whose data is erased, delivered or not (their
    deliveries and attempts go with them): scores must not leave the server after erasure."""
    result = await session.execute(
        delete(OutboxEvent).where(OutboxEvent.participant_id == participant_id)
    )
    return int(getattr(result, "rowcount", 0) or 0)
