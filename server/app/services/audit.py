"""The one writer of audit events, and the verifier of their hash chain.

Every event is written inside the caller's transaction, so it commits or rolls back with the change
it records. The chain head row is updated first: that row lock (PostgreSQL) or write lock (SQLite)
queues concurrent writers until commit, so each event's `prev_hash` is the hash of the event
committed just before it and the chain never forks.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from app.core.clock import utcnow
from app.core.json_values import normalize_json, to_json_value
from app.models.audit import GENESIS_HASH, ActorType, AuditCategory, AuditChainHead, AuditEvent
from app.models.participant import Participant
from app.schemas.common import PageParams, Pagination
from app.services.pagination import paginate

CHAIN_HEAD_ID = 1
VERIFY_BATCH_SIZE = 1000


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Who acts and from where: built once per request, passed to every service that writes."""

    actor_type: ActorType
    actor_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None

    @classmethod
    def system(cls, request_id: str | None = None) -> AuditContext:
        return cls(actor_type=ActorType.SYSTEM, actor_id="system", request_id=request_id)

    def as_actor(self, actor_type: ActorType, actor_id: str | None) -> AuditContext:
        return AuditContext(actor_type, actor_id, self.ip, self.user_agent, self.request_id)


def canonical_event(event: AuditEvent) -> bytes:
    payload = {
        "id": str(event.id),
        "sequence": event.sequence,
        "occurred_at": event.occurred_at.isoformat(timespec="microseconds"),
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "action": event.action,
        "category": event.category,
        "entity_type": event.entity_type,
        "entity_id": event.entity_id,
        "study_id": str(event.study_id) if event.study_id else None,
        "participant_id": str(event.participant_id) if event.participant_id else None,
        "before": normalize_json(event.before),
        "after": normalize_json(event.after),
        "ip": event.ip,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "reason": event.reason,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(prev_hash: str, event: AuditEvent) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical_event(event)).hexdigest()


async def record_event(
    session: AsyncSession,
    context: AuditContext,
    *,
    action: str,
    category: AuditCategory,
    entity_type: str | None = None,
    entity_id: str | uuid.UUID | None = None,
    study_id: uuid.UUID | None = None,
    participant_id: uuid.UUID | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> AuditEvent:
    """Append one event to the chain, in the caller's transaction."""
    # Flush pending changes first so the chain lock is taken as late as possible.
    await session.flush()
    head = (
        await session.execute(
            update(AuditChainHead)
            .where(AuditChainHead.id == CHAIN_HEAD_ID)
            .values(last_sequence=AuditChainHead.last_sequence + 1)
            .returning(AuditChainHead.last_sequence, AuditChainHead.last_hash)
        )
    ).one()
    sequence, prev_hash = int(head[0]), str(head[1])
    event = AuditEvent(
        id=uuid.uuid4(),
        sequence=sequence,
        # Truncated to microseconds on every backend, so the hash survives a round trip.
        occurred_at=utcnow(),
        actor_type=context.actor_type,
        actor_id=context.actor_id,
        action=action,
        category=category,
        entity_type=entity_type,
        entity_id=str(entity_id) if entity_id is not None else None,
        study_id=study_id,
        participant_id=participant_id,
        before=to_json_value(dict(before)) if before is not None else None,
        after=to_json_value(dict(after)) if after is not None else None,
        ip=context.ip,
        user_agent=(context.user_agent or None) and context.user_agent[:255],
        request_id=context.request_id,
        reason=reason,
        prev_hash=prev_hash,
    )
    event.hash = event_hash(prev_hash, event)
    session.add(event)
    await session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == CHAIN_HEAD_ID)
        .values(last_hash=event.hash)
    )
    await session.flush()
    return event


@dataclass(frozen=True, slots=True)
class ChainVerification:
    valid: bool
    events_checked: int
    first_broken_sequence: int | None = None
    first_broken_event_id: uuid.UUID | None = None
    problem: str | None = None
    last_hash: str | None = None
    verified_at: datetime | None = None


async def verify_chain(session: AsyncSession) -> ChainVerification:
    """Walk the chain in order; report the first event whose links or hash do not hold.

    The walk stops at the head as it was when it began, so events committed meanwhile are
    neither reported missing nor half-checked.
    """
    # The highest sequence is read before the head: an event committed by a writer moves the
    # head in the same transaction, so a sequence beyond the head read afterwards was not
    # written through record_event.
    highest = await session.scalar(select(func.max(AuditEvent.sequence)))
    head = (
        await session.execute(
            select(AuditChainHead.last_sequence, AuditChainHead.last_hash).where(
                AuditChainHead.id == CHAIN_HEAD_ID
            )
        )
    ).one()
    head_sequence, head_hash = int(head[0]), str(head[1])
    if highest is not None and highest > head_sequence:
        stray = await session.scalar(
            select(AuditEvent)
            .where(AuditEvent.sequence > head_sequence)
            .order_by(AuditEvent.sequence)
            .limit(1)
        )
        assert stray is not None
        return ChainVerification(
            valid=False,
            events_checked=0,
            first_broken_sequence=stray.sequence,
            first_broken_event_id=stray.id,
            problem="an event lies beyond the end of the chain",
            verified_at=utcnow(),
        )
    expected_prev = GENESIS_HASH
    expected_sequence = 1
    checked = 0
    last_sequence = 0
    while last_sequence < head_sequence:
        batch = (
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.sequence > last_sequence)
                .where(AuditEvent.sequence <= head_sequence)
                .order_by(AuditEvent.sequence)
                .limit(VERIFY_BATCH_SIZE)
            )
        ).all()
        if not batch:
            break
        for event in batch:
            problem = None
            if event.sequence != expected_sequence:
                problem = f"sequence {event.sequence} found where {expected_sequence} was expected"
            elif event.prev_hash != expected_prev:
                problem = "prev_hash does not match the previous event's hash"
            elif event_hash(event.prev_hash, event) != event.hash:
                problem = "hash does not match the event's content"
            if problem:
                return ChainVerification(
                    valid=False,
                    events_checked=checked,
                    first_broken_sequence=event.sequence,
                    first_broken_event_id=event.id,
                    problem=problem,
                    verified_at=utcnow(),
                )
            checked += 1
            expected_prev = event.hash
            expected_sequence += 1
            last_sequence = event.sequence
        # Verified rows need not stay in the identity map during a long walk.
        for event in batch:
            session.expunge(event)
    if checked != head_sequence or expected_prev != head_hash:
        return ChainVerification(
            valid=False,
            events_checked=checked,
            first_broken_sequence=checked + 1,
            problem="events are missing at the end of the chain",
            verified_at=utcnow(),
        )
    return ChainVerification(
        valid=True, events_checked=checked, last_hash=expected_prev, verified_at=utcnow()
    )


def _scope_condition(study_id: uuid.UUID, site_id: uuid.UUID | None) -> ColumnElement[bool]:
    in_study = AuditEvent.study_id == study_id
    if site_id is None:
        return in_study
    of_the_site = select(Participant.id).where(
        Participant.study_id == study_id, Participant.site_id == site_id
    )
    return in_study & or_(
        AuditEvent.participant_id.is_(None), AuditEvent.participant_id.in_(of_the_site)
    )


async def list_events(
    session: AsyncSession,
    params: PageParams,
    *,
    study_id: uuid.UUID | None = None,
    participant_id: uuid.UUID | None = None,
    category: AuditCategory | None = None,
    actor_id: str | None = None,
    action: str | None = None,
    occurred_from: datetime | None = None,
    occurred_to: datetime | None = None,
    scopes: Mapping[uuid.UUID, uuid.UUID | None] | None = None,
) -> tuple[Sequence[AuditEvent], Pagination]:
    """`scopes` None: every event (administrators). Else the events of those studies (study →
    site): within a site-scoped study, those about no participant or about one of that site."""
    statement = select(AuditEvent)
    if scopes is not None:
        statement = statement.where(
            or_(*(_scope_condition(study, site) for study, site in scopes.items()))
        )
    if study_id is not None:
        statement = statement.where(AuditEvent.study_id == study_id)
    if participant_id is not None:
        statement = statement.where(AuditEvent.participant_id == participant_id)
    if category is not None:
        statement = statement.where(AuditEvent.category == category)
    if actor_id is not None:
        statement = statement.where(AuditEvent.actor_id == actor_id)
    if action is not None:
        statement = statement.where(AuditEvent.action == action)
    if occurred_from is not None:
        statement = statement.where(AuditEvent.occurred_at >= occurred_from)
    if occurred_to is not None:
        statement = statement.where(AuditEvent.occurred_at <= occurred_to)
    return await paginate(
        session,
        statement,
        params,
        sortable={"sequence": AuditEvent.sequence, "occurred_at": AuditEvent.occurred_at},
        default_sort="sequence",
        tie_breaker=AuditEvent.sequence,
    )
