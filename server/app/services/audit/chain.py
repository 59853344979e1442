"""The chainer: links committed events into the keyed chain, in sequence order, in batches.

Writers only insert events (`record_event`); this runs afterwards, from the periodic task and
before every verification. One chainer at a time: each locks the `audit_chain_state` row
(FOR UPDATE on PostgreSQL; on SQLite its transaction holds the single write lock), and a link's
position is its primary key, so two chainers cannot fork the chain.

Commit order and gaps (docs/adr/0004-audit-chain.md). A PostgreSQL sequence hands out numbers at
insert time; transactions commit in another order, and one that rolls back leaves its number
unused forever. The chainer links the visible events whose numbers follow the chain's end
without a hole. At a hole it must know whether the number can still appear:

1. it reads how far the sequence has handed out numbers (`allocated`), then the transactions
   that hold a write lock on audit_events. A transaction takes that lock before its insert asks
   the sequence for a number, so any transaction still holding a number up to `allocated` is
   among them;
2. it waits (at most AUDIT_CHAIN_GAP_WAIT_SECONDS) for those transactions to end, then reads
   again: an event they committed is now visible and is linked; a number up to `allocated` still
   missing was rolled back and is linked as a gap. Numbers above `allocated`, or writers still
   running after the wait, stop the run there; the next run goes on.

SQLite has one writer at a time and numbers events max + 1 inside it: the chainer's own
transaction holds the write lock, so nothing is in flight, and a hole there can only be an
event removed before it was chained.

A state row that disagrees with the links (missing, rewound, altered) stops the chainer with
`AuditChainStateError`; writers never read it, so writes go on.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.core.clock import utcnow
from app.core.logging import get_logger
from app.db.session import transaction_scope
from app.models.audit import (
    CHAIN_STATE_ID,
    GENESIS_MAC,
    AuditChainLink,
    AuditChainState,
    AuditEvent,
)
from app.services.audit.checkpoints import Checkpoint, CheckpointStore, FileCheckpointStore
from app.services.audit.events import canonical_event
from app.services.audit.keys import ChainKey, ChainKeyring

logger = get_logger(__name__)

LINK_DOMAIN = b"metricis-audit-link-v1"
# How often the chainer looks whether the writers it waits for have ended.
GAP_POLL_SECONDS = 0.05


class AuditChainStateError(Exception):
    """The state row is missing or disagrees with the links: the chainer will not go on."""

    def __init__(self, message: str, first_broken_sequence: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.first_broken_sequence = first_broken_sequence


@dataclass(frozen=True, slots=True)
class ChainSettings:
    keyring: ChainKeyring
    checkpoints: CheckpointStore
    batch_size: int = 1000
    gap_wait_seconds: float = 2.0
    checkpoint_every: int = 1000
    checkpoint_max_age: timedelta = timedelta(hours=24)

    @classmethod
    def from_settings(cls, settings: Settings) -> ChainSettings:
        return cls(
            keyring=ChainKeyring.from_settings(settings),
            checkpoints=FileCheckpointStore(settings.audit_checkpoint_dir),
            batch_size=settings.AUDIT_CHAIN_BATCH_SIZE,
            gap_wait_seconds=settings.AUDIT_CHAIN_GAP_WAIT_SECONDS,
            checkpoint_every=settings.AUDIT_CHECKPOINT_EVERY,
            checkpoint_max_age=timedelta(hours=settings.AUDIT_CHECKPOINT_MAX_AGE_HOURS),
        )


@dataclass(frozen=True, slots=True)
class ChainRun:
    linked_events: int = 0
    linked_gaps: int = 0
    last_sequence: int = 0
    # The first number the run could not settle: a transaction holding it may still commit.
    waiting_at: int | None = None
    # Another chainer held the state row (only when not waiting for it).
    busy: bool = False
    # Why the chainer did not run: the state row is missing or disagrees with the links.
    state_problem: str | None = None


def gap_content(sequence: int) -> bytes:
    return json.dumps({"gap": True, "sequence": sequence}, sort_keys=True).encode()


def link_mac(
    key: ChainKey, chain_id: uuid.UUID, sequence: int, prev_mac: str, content: bytes
) -> str:
    """HMAC-SHA256 over the chain, the key's id, the position, the previous MAC and the
    content (an event's canonical JSON, or `gap_content`)."""
    message = b"\n".join(
        (
            LINK_DOMAIN,
            str(chain_id).encode(),
            key.key_id.encode(),
            str(sequence).encode(),
            prev_mac.encode(),
            content,
        )
    )
    return key.mac(message)


async def lock_state(session: AsyncSession, *, skip_locked: bool = False) -> AuditChainState | None:
    """The state row, locked until the transaction ends; None when `skip_locked` and another
    chainer holds it. A missing row raises AuditChainStateError."""
    state = await session.scalar(
        select(AuditChainState)
        .where(AuditChainState.id == CHAIN_STATE_ID)
        .with_for_update(skip_locked=skip_locked)
        .execution_options(populate_existing=True)
    )
    if state is not None:
        return state
    if skip_locked and await session.scalar(
        select(AuditChainState.id).where(AuditChainState.id == CHAIN_STATE_ID)
    ):
        return None
    raise AuditChainStateError("the audit chain state row is missing")


async def last_link(session: AsyncSession) -> tuple[int, str]:
    row = (
        await session.execute(
            select(AuditChainLink.sequence, AuditChainLink.mac)
            .order_by(AuditChainLink.sequence.desc())
            .limit(1)
        )
    ).first()
    return (int(row[0]), str(row[1])) if row is not None else (0, GENESIS_MAC)


async def check_state_matches_links(session: AsyncSession, state: AuditChainState) -> None:
    sequence, mac = await last_link(session)
    if state.last_sequence != sequence:
        raise AuditChainStateError(
            f"the audit chain state says the chain ends at sequence {state.last_sequence}, "
            f"but its links end at {sequence}",
            min(state.last_sequence, sequence) + 1,
        )
    if state.last_mac != mac:
        raise AuditChainStateError(
            f"the audit chain state's last mac differs from the mac of link {sequence}",
            sequence,
        )


async def _allocated_up_to(session: AsyncSession) -> int:
    """The highest number the PostgreSQL sequence has handed out (not transactional)."""
    row = (
        await session.execute(text("SELECT last_value, is_called FROM audit_events_sequence_seq"))
    ).one()
    return int(row[0]) if row[1] else int(row[0]) - 1


async def _writers_in_flight(session: AsyncSession) -> list[str]:
    """The transactions (virtual ids) of other sessions holding a write lock on audit_events."""
    rows = await session.scalars(
        text(
            "SELECT DISTINCT virtualtransaction FROM pg_locks "
            "WHERE locktype = 'relation' AND mode = 'RowExclusiveLock' "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND relation = 'audit_events'::regclass AND pid <> pg_backend_pid()"
        )
    )
    return [str(row) for row in rows]


async def _writers_finished(session: AsyncSession, writers: list[str], wait: float) -> bool:
    """Whether every one of those transactions ended within `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        still_running = await session.scalar(
            text("SELECT count(*) FROM pg_locks WHERE virtualtransaction = ANY(:writers)"),
            {"writers": writers},
        )
        if not still_running:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(GAP_POLL_SECONDS)


async def _events_from(session: AsyncSession, sequence: int, count: int) -> list[AuditEvent]:
    events = (
        await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.sequence >= sequence)
            .order_by(AuditEvent.sequence)
            .limit(count)
            .execution_options(populate_existing=True)
        )
    ).all()
    return list(events)


class _Links:
    """The links of one run, each made from the one before."""

    def __init__(self, key: ChainKey, chain_id: uuid.UUID, sequence: int, mac: str) -> None:
        self.key = key
        self.chain_id = chain_id
        self.next_sequence = sequence + 1
        self.mac = mac
        self.now = utcnow()
        self.rows: list[dict[str, Any]] = []
        self.events = 0
        self.gaps: list[int] = []

    def add(self, event: AuditEvent | None) -> None:
        sequence = self.next_sequence
        content = canonical_event(event) if event is not None else gap_content(sequence)
        mac = link_mac(self.key, self.chain_id, sequence, self.mac, content)
        self.rows.append(
            {
                "sequence": sequence,
                "event_id": event.id if event is not None else None,
                "prev_mac": self.mac,
                "mac": mac,
                "key_id": self.key.key_id,
                "chained_at": self.now,
            }
        )
        if event is None:
            self.gaps.append(sequence)
        else:
            self.events += 1
        self.mac = mac
        self.next_sequence += 1

    async def write(self, session: AsyncSession) -> None:
        if self.rows:
            await session.execute(insert(AuditChainLink), self.rows)
            self.rows = []


async def chain_pending_events(
    session: AsyncSession,
    chain: ChainSettings,
    *,
    limit: int | None = None,
    wait_for_lock: bool = True,
) -> ChainRun:
    """Link the committed events that follow the chain's end, at most `limit` positions (None:
    all), in the caller's transaction. `wait_for_lock=False` returns at once (busy) when another
    chainer runs. Raises AuditChainStateError when the state disagrees with the links."""
    state = await lock_state(session, skip_locked=not wait_for_lock)
    if state is None:
        return ChainRun(busy=True)
    try:
        await check_state_matches_links(session, state)
    except AuditChainStateError as exc:
        logger.error("audit_chain_state_damaged", problem=exc.message)
        raise
    postgres = session.get_bind().dialect.name == "postgresql"
    # Up to `allocated`, a number not visible once `writers` have ended never will be. On SQLite
    # this transaction holds the only write lock: whatever is not visible does not exist.
    allocated = await _allocated_up_to(session) if postgres else None
    writers = await _writers_in_flight(session) if postgres else []
    settled = not writers

    links = _Links(chain.keyring.current, state.chain_id, state.last_sequence, state.last_mac)
    remaining = limit if limit is not None else sys.maxsize
    waiting_at: int | None = None
    while remaining > 0 and waiting_at is None:
        wanted = min(chain.batch_size, remaining)
        events = await _events_from(session, links.next_sequence, wanted)
        read_again = False
        for event in events:
            if remaining == 0:
                break
            if event.sequence > links.next_sequence:
                hole = links.next_sequence
                if allocated is not None and hole > allocated:
                    waiting_at = hole
                    break
                if not settled:
                    settled = await _writers_finished(session, writers, chain.gap_wait_seconds)
                    if settled:
                        # What those writers committed is visible to the next statement.
                        read_again = True
                    else:
                        waiting_at = hole
                    break
                gap_end = (
                    event.sequence if allocated is None else min(event.sequence, allocated + 1)
                )
                while links.next_sequence < gap_end and remaining > 0:
                    links.add(None)
                    remaining -= 1
                if remaining == 0:
                    break
                if links.next_sequence < event.sequence:
                    waiting_at = links.next_sequence
                    break
            links.add(event)
            remaining -= 1
        for event in events:
            session.expunge(event)
        await links.write(session)
        if not read_again and len(events) < wanted:
            break

    if links.next_sequence - 1 > state.last_sequence:
        await session.execute(
            update(AuditChainState)
            .where(AuditChainState.id == CHAIN_STATE_ID)
            .values(last_sequence=links.next_sequence - 1, last_mac=links.mac, updated_at=links.now)
            .execution_options(synchronize_session=False)
        )
        logger.info(
            "audit_chain_linked",
            events=links.events,
            gaps=len(links.gaps),
            last_sequence=links.next_sequence - 1,
            key_id=links.key.key_id,
        )
    if links.gaps:
        # Normal on PostgreSQL (a transaction that recorded an event rolled back); on SQLite,
        # whose numbers have no gaps, an event was removed before it was chained.
        log = logger.info if postgres else logger.warning
        log("audit_chain_gaps", sequences=links.gaps[:100], count=len(links.gaps))
    if waiting_at is not None:
        logger.info("audit_chain_waiting", sequence=waiting_at)
    return ChainRun(
        linked_events=links.events,
        linked_gaps=len(links.gaps),
        last_sequence=links.next_sequence - 1,
        waiting_at=waiting_at,
    )


async def publish_due_checkpoint(
    session: AsyncSession,
    chain: ChainSettings,
    *,
    now: datetime | None = None,
    force: bool = False,
    wait_for_lock: bool = False,
) -> Checkpoint | None:
    """Sign and publish a checkpoint of the chain's end when one is due: AUDIT_CHECKPOINT_EVERY
    links since the last, or the last older than AUDIT_CHECKPOINT_MAX_AGE_HOURS (`force`: now).

    Published (stored, then logged) before the state records it: a crash in between publishes
    it again, which is harmless; a checkpoint recorded but never published cannot happen."""
    state = await lock_state(session, skip_locked=not wait_for_lock)
    if state is None:
        return None
    try:
        await check_state_matches_links(session, state)
    except AuditChainStateError as exc:
        logger.error("audit_chain_state_damaged", problem=exc.message)
        raise
    if state.last_sequence == 0:
        return None
    now = now or utcnow()
    due = (
        force
        or state.last_checkpoint_at is None
        or state.last_sequence - state.last_checkpoint_sequence >= chain.checkpoint_every
        or now - state.last_checkpoint_at >= chain.checkpoint_max_age
    )
    if not due:
        return None
    checkpoint = Checkpoint.sign(
        chain.keyring.current, state.chain_id, state.last_sequence, state.last_mac, now
    )
    await chain.checkpoints.append(checkpoint)
    logger.info("audit_checkpoint", **checkpoint.as_json())
    await session.execute(
        update(AuditChainState)
        .where(AuditChainState.id == CHAIN_STATE_ID)
        .values(last_checkpoint_sequence=checkpoint.sequence, last_checkpoint_at=now)
        .execution_options(synchronize_session=False)
    )
    return checkpoint


async def run_chainer(sessions: async_sessionmaker[AsyncSession], chain: ChainSettings) -> ChainRun:
    """The periodic task's work: link everything pending, one batch per transaction so that a
    backlog never holds one long transaction, then publish a checkpoint if one is due. Returns
    at once when another chainer runs; a damaged state is logged and returned, not raised."""
    linked_events = linked_gaps = 0
    run = ChainRun()
    try:
        while True:
            async with sessions() as session, transaction_scope(session):
                run = await chain_pending_events(
                    session, chain, limit=chain.batch_size, wait_for_lock=False
                )
            linked_events += run.linked_events
            linked_gaps += run.linked_gaps
            done = run.linked_events + run.linked_gaps < chain.batch_size
            if run.busy or run.waiting_at is not None or done:
                break
        if not run.busy:
            async with sessions() as session, transaction_scope(session):
                await publish_due_checkpoint(session, chain)
    except AuditChainStateError as exc:
        return ChainRun(state_problem=exc.message)
    return ChainRun(
        linked_events=linked_events,
        linked_gaps=linked_gaps,
        last_sequence=run.last_sequence,
        waiting_at=run.waiting_at,
        busy=run.busy,
    )
