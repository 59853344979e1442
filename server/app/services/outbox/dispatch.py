"""Delivering the outbox: claim due deliveries, send them, record every attempt, retry, give up.

A dispatcher run works through several lanes at once. Each lane claims one due delivery in a
short transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so concurrent runs never claim the
same row; SQLite's write lock serialises the claims instead), writes the attempt as
`in_progress` and leases the delivery; it then sends without holding a transaction, and records
the outcome in a second one. A worker killed in between leaves the delivery leased: once the
lease runs out another run claims it again and logs the cut-short attempt as `interrupted`. The
receiver may then see the event twice (delivery is at least once); the event id lets it dedupe.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from app.config import Settings
from app.core import events as after_commit
from app.core.clock import utcnow
from app.core.errors import ConflictError
from app.core.logging import get_logger
from app.db.session import transaction_scope
from app.models.outbox import (
    AttemptOutcome,
    DeliveryStatus,
    DestinationKind,
    EventType,
    OutboxDelivery,
    OutboxDeliveryAttempt,
    OutboxEvent,
)
from app.services.outbox.writer import OUTBOX_WRITTEN

logger = get_logger(__name__)

SessionFactory = Callable[[], AbstractAsyncContextManager[AsyncSession]]
JobT = TypeVar("JobT")

ERROR_MAX_CHARS = 500
INTERRUPTED_ERROR = "The worker stopped before it recorded the result"

_jitter = secrets.SystemRandom()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: the n-th failure waits between half and all of
    min(max, base × 2^(n-1)); after `max_attempts` failures the delivery is dead."""

    max_attempts: int
    base_seconds: float
    max_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            max_attempts=settings.OUTBOX_MAX_ATTEMPTS,
            base_seconds=settings.OUTBOX_RETRY_BASE_SECONDS,
            max_seconds=settings.OUTBOX_RETRY_MAX_SECONDS,
        )

    def ceiling(self, failures: int) -> float:
        # The exponent is bounded: 2^60 seconds is already past any cap.
        return min(self.max_seconds, self.base_seconds * 2.0 ** min(failures - 1, 60))

    def delay(self, failures: int) -> float:
        ceiling = self.ceiling(failures)
        # Half fixed, half random: retries of many deliveries spread out, none comes too soon.
        return ceiling / 2 + _jitter.uniform(0, ceiling / 2)


@dataclass(frozen=True, slots=True)
class EventSnapshot:
    id: uuid.UUID
    type: EventType
    version: int
    study_id: uuid.UUID
    payload: dict[str, Any]
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    delivery_id: uuid.UUID
    subscription_id: uuid.UUID | None
    attempt_id: uuid.UUID
    attempt_number: int
    event: EventSnapshot
    redcap_project_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class AttemptResult:
    outcome: AttemptOutcome
    status_code: int | None = None
    duration_ms: int = 0
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.outcome is AttemptOutcome.DELIVERED


@dataclass(frozen=True, slots=True)
class Destination(Generic[JobT]):
    """How one kind of destination takes part in a run.

    `conditions` narrow the deliveries that may be claimed (a paused webhook's wait);
    `prepare` reads what sending needs in the claim's transaction, or answers a failed attempt
    at once (a secret that no key decrypts); `send` makes the attempt and never raises.
    """

    kind: DestinationKind
    conditions: Sequence[ColumnElement[bool]]
    prepare: Callable[[AsyncSession, ClaimedDelivery], Awaitable[JobT | AttemptResult]]
    send: Callable[[JobT], Awaitable[AttemptResult]]


@dataclass(slots=True)
class DispatchReport:
    attempts: int = 0
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def count(self, result: AttemptResult, status: DeliveryStatus | None) -> None:
        self.attempts += 1
        self.outcomes[result.outcome.value] = self.outcomes.get(result.outcome.value, 0) + 1
        if status is DeliveryStatus.DELIVERED:
            self.delivered += 1
        elif status is DeliveryStatus.DEAD:
            self.dead += 1
        elif status is DeliveryStatus.FAILED:
            self.failed += 1


def _clip(error: str | None) -> str | None:
    return error[:ERROR_MAX_CHARS] if error else None


def _snapshot(event: OutboxEvent) -> EventSnapshot:
    return EventSnapshot(
        id=event.id,
        type=event.type,
        version=event.version,
        study_id=event.study_id,
        payload=dict(event.payload),
        occurred_at=event.occurred_at,
    )


async def _close_interrupted_attempt(session: AsyncSession, delivery: OutboxDelivery) -> None:
    if delivery.current_attempt_id is None:
        return
    attempt = await session.get(OutboxDeliveryAttempt, delivery.current_attempt_id)
    if attempt is not None and attempt.outcome is AttemptOutcome.IN_PROGRESS:
        attempt.outcome = AttemptOutcome.INTERRUPTED
        attempt.error = INTERRUPTED_ERROR


async def _due(
    session: AsyncSession,
    kind: DestinationKind,
    conditions: Sequence[ColumnElement[bool]],
    policy: RetryPolicy,
    now: datetime,
    limit: int,
) -> list[OutboxDelivery]:
    """Up to `limit` due deliveries, locked. One whose worker died after using up its attempts
    is closed as dead on the way (its last attempt `interrupted`), and another taken instead."""
    found: list[OutboxDelivery] = []
    while len(found) < limit:
        rows = (
            await session.scalars(
                select(OutboxDelivery)
                .where(
                    OutboxDelivery.destination == kind,
                    OutboxDelivery.next_attempt_at <= now,
                    OutboxDelivery.id.not_in([delivery.id for delivery in found]),
                    *conditions,
                )
                .order_by(OutboxDelivery.next_attempt_at)
                .limit(limit - len(found))
                .with_for_update(skip_locked=True)
            )
        ).all()
        if not rows:
            break
        for delivery in rows:
            if delivery.status is DeliveryStatus.DELIVERING:
                await _close_interrupted_attempt(session, delivery)
                delivery.current_attempt_id = None
                delivery.last_error = INTERRUPTED_ERROR
                if delivery.round_attempts >= policy.max_attempts:
                    delivery.status = DeliveryStatus.DEAD
                    delivery.next_attempt_at = None
                    continue
            found.append(delivery)
        # The dead ones are no longer due; the next query must see that.
        await session.flush()
    return found


async def claim_due(
    session: AsyncSession,
    kind: DestinationKind,
    conditions: Sequence[ColumnElement[bool]],
    policy: RetryPolicy,
    *,
    lease_seconds: float,
    limit: int = 1,
) -> list[ClaimedDelivery]:
    """Claim up to `limit` due deliveries: each gets an `in_progress` attempt and a lease.

    Due means its retry time has come, or the lease of the worker that held it has run out; a
    delivery whose last attempts were all cut short is dead once it has used them up."""
    now = utcnow()
    claimed: list[ClaimedDelivery] = []
    for delivery in await _due(session, kind, conditions, policy, now, limit):
        event = await session.get(OutboxEvent, delivery.event_id)
        assert event is not None  # deleting an event deletes its deliveries
        attempt = OutboxDeliveryAttempt(
            id=uuid.uuid4(),
            delivery_id=delivery.id,
            number=delivery.attempts + 1,
            started_at=now,
            outcome=AttemptOutcome.IN_PROGRESS,
        )
        session.add(attempt)
        delivery.status = DeliveryStatus.DELIVERING
        delivery.attempts += 1
        delivery.round_attempts += 1
        delivery.current_attempt_id = attempt.id
        delivery.last_attempt_at = now
        delivery.next_attempt_at = now + timedelta(seconds=lease_seconds)
        claimed.append(
            ClaimedDelivery(
                delivery_id=delivery.id,
                subscription_id=delivery.subscription_id,
                attempt_id=attempt.id,
                attempt_number=attempt.number,
                event=_snapshot(event),
                redcap_project_id=delivery.redcap_project_id,
            )
        )
    await session.flush()
    return claimed


async def record_result(
    session: AsyncSession, claimed: ClaimedDelivery, result: AttemptResult, policy: RetryPolicy
) -> DeliveryStatus | None:
    """Write the attempt's outcome and move the delivery on: delivered, failed with the next
    retry scheduled, or dead. A worker whose lease was taken over records its attempt only.
    Answers the delivery's status, None when it no longer exists (its webhook was deleted)."""
    now = utcnow()
    attempt = await session.get(OutboxDeliveryAttempt, claimed.attempt_id)
    if attempt is not None:
        attempt.outcome = result.outcome
        attempt.status_code = result.status_code
        attempt.duration_ms = result.duration_ms
        attempt.error = _clip(result.error)
        attempt.finished_at = now
    delivery = await session.get(OutboxDelivery, claimed.delivery_id, with_for_update=True)
    if delivery is None:
        return None
    if delivery.current_attempt_id != claimed.attempt_id:
        return delivery.status
    delivery.current_attempt_id = None
    delivery.last_status_code = result.status_code
    delivery.last_duration_ms = result.duration_ms
    delivery.last_error = _clip(result.error)
    if result.delivered:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = now
        delivery.next_attempt_at = None
    elif delivery.round_attempts >= policy.max_attempts:
        delivery.status = DeliveryStatus.DEAD
        delivery.next_attempt_at = None
    else:
        delivery.status = DeliveryStatus.FAILED
        delivery.next_attempt_at = now + timedelta(seconds=policy.delay(delivery.round_attempts))
    await session.flush()
    return delivery.status


async def redeliver(session: AsyncSession, delivery: OutboxDelivery) -> None:
    """Send a delivery again now, whatever became of it, with a fresh allowance of attempts.
    One being sent at this moment is a conflict: its outcome is not known yet."""
    if delivery.status is DeliveryStatus.DELIVERING:
        raise ConflictError(
            "This delivery is being sent right now; try again once it has an outcome",
            details={"reason": "DELIVERY_IN_PROGRESS", "status": delivery.status.value},
        )
    delivery.status = DeliveryStatus.PENDING
    delivery.round_attempts = 0
    delivery.next_attempt_at = utcnow()
    await session.flush()
    after_commit.emit(session, OUTBOX_WRITTEN, {})


async def dispatch(
    sessions: SessionFactory,
    destination: Destination[JobT],
    policy: RetryPolicy,
    *,
    lease_seconds: float,
    concurrency: int,
    max_seconds: float,
) -> DispatchReport:
    """Send due deliveries through `concurrency` lanes until none is due or `max_seconds` have
    passed (the rest waits for the next run)."""
    report = DispatchReport()
    deadline = time.monotonic() + max_seconds

    async def claim_one() -> tuple[ClaimedDelivery, JobT | AttemptResult] | None:
        async with sessions() as session, transaction_scope(session):
            claimed = await claim_due(
                session,
                destination.kind,
                destination.conditions,
                policy,
                lease_seconds=lease_seconds,
            )
            if not claimed:
                return None
            return claimed[0], await destination.prepare(session, claimed[0])

    async def lane() -> None:
        while time.monotonic() < deadline:
            found = await claim_one()
            if found is None:
                return
            claimed, job = found
            result = job if isinstance(job, AttemptResult) else await destination.send(job)
            async with sessions() as session, transaction_scope(session):
                status = await record_result(session, claimed, result, policy)
            report.count(result, status)
            logger.info(
                "outbox_attempt",
                delivery_id=str(claimed.delivery_id),
                event_id=str(claimed.event.id),
                event_type=claimed.event.type.value,
                attempt=claimed.attempt_number,
                outcome=result.outcome.value,
                status_code=result.status_code,
                duration_ms=result.duration_ms,
                delivery_status=status.value if status else None,
            )

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(lane())
    except ExceptionGroup as failed_lanes:
        # The task's automatic retry matches on the error's type (a lost database connection is
        # retried with backoff): raise the first lane's failure itself, not the group around it,
        # or the run would be dropped until beat's next scan.
        raise failed_lanes.exceptions[0] from failed_lanes
    return report
