"""Concurrent writers in independent transactions keep one unbroken chain.

These tests cannot use `db_session`: on SQLite it holds the write lock for the whole test. They
open sessions of their own on the migrated test database, which commit for real; audit_events
refuses DELETE, so those events stay until the test database is rebuilt (next test session).
Assertions therefore hold whatever events earlier tests committed: they read the chain head
before, check the events added since, and check the whole table after.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.session import create_sessionmaker
from app.models.audit import GENESIS_HASH, ActorType, AuditCategory, AuditEvent
from app.services.audit import (
    AuditContext,
    ChainVerification,
    event_hash,
    record_event,
    verify_chain,
)
from tests.audit.helpers import Head, read_head, stored_events, table_stats

WORKERS = 10
TRANSACTIONS_PER_WORKER = 2
EVENTS_PER_TRANSACTION = 3


class RollbackRequestedError(Exception):
    """Raised inside a worker's transaction to roll it back."""


@dataclass
class Outcome:
    committed: list[uuid.UUID] = field(default_factory=list)
    rolled_back: list[uuid.UUID] = field(default_factory=list)


def _rolls_back(worker: int, transaction: int) -> bool:
    return (worker + transaction) % 3 == 0


async def _head(sessions: async_sessionmaker[AsyncSession]) -> Head:
    async with sessions() as session:
        return await read_head(session)


async def _assert_whole_chain_sound(sessions: async_sessionmaker[AsyncSession]) -> Head:
    """Holds whatever was committed before: contiguous from 1, never forked, verified."""
    async with sessions() as session:
        head = await read_head(session)
        count, first, last, distinct_prev, distinct_hash = await table_stats(session)
        assert count == head.last_sequence
        assert (first, last) == ((1, count) if count else (0, 0))
        assert distinct_prev == count, "two events share a prev_hash: the chain forked"
        assert distinct_hash == count
        result = await verify_chain(session)
        assert result.valid, result
        assert result.events_checked == head.last_sequence
        assert result.last_hash == head.last_hash
        return head


async def test_concurrent_writers_keep_one_unbroken_chain(migrated_engine: AsyncEngine) -> None:
    sessions = create_sessionmaker(migrated_engine)
    run = f"concurrency-{uuid.uuid4().hex}"
    before = await _head(sessions)
    start = asyncio.Event()
    open_transactions = 0
    most_open_transactions = 0

    async def worker(index: int) -> Outcome:
        nonlocal open_transactions, most_open_transactions
        outcome = Outcome()
        context = AuditContext(ActorType.USER, f"worker-{index}", request_id=run)
        await start.wait()
        for transaction in range(TRANSACTIONS_PER_WORKER):
            ids: list[uuid.UUID] = []
            try:
                async with sessions() as session, session.begin():
                    open_transactions += 1
                    most_open_transactions = max(most_open_transactions, open_transactions)
                    for number in range(EVENTS_PER_TRANSACTION):
                        event = await record_event(
                            session,
                            context,
                            action="test.concurrent_write",
                            category=AuditCategory.DATA,
                            entity_type="worker",
                            entity_id=f"{index}.{transaction}.{number}",
                            after={"worker": index, "transaction": transaction, "n": number},
                        )
                        ids.append(event.id)
                        # Let the other workers run between the statements of a transaction.
                        await asyncio.sleep(0)
                    open_transactions -= 1
                    if _rolls_back(index, transaction):
                        raise RollbackRequestedError
            except RollbackRequestedError:
                outcome.rolled_back += ids
            else:
                outcome.committed += ids
        return outcome

    tasks = [asyncio.ensure_future(worker(index)) for index in range(WORKERS)]
    await asyncio.sleep(0)
    start.set()
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    # The transactions really overlapped: writers queued on the chain head, not one by one.
    assert most_open_transactions >= WORKERS // 2

    committed = [event_id for outcome in outcomes for event_id in outcome.committed]
    rolled_back = [event_id for outcome in outcomes for event_id in outcome.rolled_back]
    transactions = WORKERS * TRANSACTIONS_PER_WORKER
    rolled_back_transactions = sum(
        _rolls_back(worker, transaction)
        for worker in range(WORKERS)
        for transaction in range(TRANSACTIONS_PER_WORKER)
    )
    assert 0 < rolled_back_transactions < transactions
    assert len(committed) == (transactions - rolled_back_transactions) * EVENTS_PER_TRANSACTION
    assert len(rolled_back) == rolled_back_transactions * EVENTS_PER_TRANSACTION
    assert len(set(committed) | set(rolled_back)) == len(committed) + len(rolled_back)

    after = await _assert_whole_chain_sound(sessions)
    async with sessions() as session:
        added = await stored_events(session, after_sequence=before.last_sequence)
        ours = (
            await session.scalars(select(AuditEvent.id).where(AuditEvent.request_id == run))
        ).all()

    # Every committed event exactly once, no rolled-back one, nothing else.
    assert sorted(event.id for event in added) == sorted(committed)
    assert sorted(ours) == sorted(committed)
    assert not {event.id for event in added} & set(rolled_back)
    # Contiguous after the previous head, each linked to the one before.
    assert [event.sequence for event in added] == list(
        range(before.last_sequence + 1, after.last_sequence + 1)
    )
    assert len({event.prev_hash for event in added}) == len(added)
    prev_hash = before.last_hash
    for event in added:
        assert event.prev_hash == prev_hash
        assert event.hash == event_hash(prev_hash, event)
        prev_hash = event.hash
    assert prev_hash == after.last_hash
    # Each transaction's events stay in order within the chain (serialized per transaction).
    for index in range(WORKERS):
        own = [event for event in added if event.actor_id == f"worker-{index}"]
        assert [event.entity_id for event in own] == [
            f"{index}.{transaction}.{number}"
            for transaction in range(TRANSACTIONS_PER_WORKER)
            if not _rolls_back(index, transaction)
            for number in range(EVENTS_PER_TRANSACTION)
        ]
        assert [event.sequence for event in own] == sorted(event.sequence for event in own)


async def test_first_committed_event_after_genesis_links_to_it(
    migrated_engine: AsyncEngine,
) -> None:
    """Whatever the real chain holds, its first event links to the genesis hash."""
    sessions = create_sessionmaker(migrated_engine)
    async with sessions() as session, session.begin():
        await record_event(
            session, AuditContext.system(), action="test.commit", category=AuditCategory.CONFIG
        )
    async with sessions() as session:
        first = (await stored_events(session))[0]
    assert first.sequence == 1
    assert first.prev_hash == GENESIS_HASH
    await _assert_whole_chain_sound(sessions)


class _CommitsDuringVerify(AsyncSession):
    """A session that, just before its `inject_before`-th statement, lets another transaction
    commit an event (counting `execute`, which `scalars` goes through, `scalar` and `get`)."""

    inject_before = 0
    statements = 0
    writer: Callable[[], Awaitable[None]] | None = None
    wrote = False

    async def _before_statement(self) -> None:
        self.statements += 1
        if self.statements == self.inject_before and self.writer is not None:
            await self.writer()
            self.wrote = True

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        await self._before_statement()
        return await super().execute(*args, **kwargs)

    async def scalar(self, *args: Any, **kwargs: Any) -> Any:
        await self._before_statement()
        return await super().scalar(*args, **kwargs)

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        await self._before_statement()
        return await super().get(*args, **kwargs)


async def test_verify_is_not_fooled_by_commits_during_the_walk(
    migrated_engine: AsyncEngine,
) -> None:
    """A writer committing while `verify_chain` runs must not make a sound chain look broken.

    The chain is verified once per point where another transaction can commit an event: before
    the 1st statement of the verification, before the 2nd, and so on until the verification ends
    before reaching it. SQLite (a deferred transaction in WAL mode) reads everything from one
    snapshot; PostgreSQL runs at READ COMMITTED, where each statement sees the latest commits, so
    a verifier that read the head after walking the events would see a head ahead of its walk.
    """
    sessions = create_sessionmaker(migrated_engine)
    await _assert_whole_chain_sound(sessions)

    async def commit_one_event() -> None:
        async with sessions() as writer, writer.begin():
            await record_event(
                writer,
                AuditContext.system(),
                action="test.during_verify",
                category=AuditCategory.DATA,
            )

    # Deferred on SQLite so that the verifier does not hold the write lock the writer needs.
    verifier_sessions = async_sessionmaker(
        migrated_engine.execution_options(sqlite_deferred=True),
        class_=_CommitsDuringVerify,
        expire_on_commit=False,
    )
    results: dict[int, ChainVerification] = {}
    for inject_before in itertools.count(1):
        assert inject_before < 50, "verify_chain never finished before the injection point"
        before = await _head(sessions)
        async with verifier_sessions() as verifier:
            assert isinstance(verifier, _CommitsDuringVerify)
            verifier.inject_before = inject_before
            verifier.writer = commit_one_event
            result = await verify_chain(verifier)
        if not verifier.wrote:
            break
        after = await _assert_whole_chain_sound(sessions)
        assert after.last_sequence == before.last_sequence + 1
        assert result.events_checked in (before.last_sequence, after.last_sequence), result
        results[inject_before] = result

    assert results, "no commit was injected"
    broken = {point: result for point, result in results.items() if not result.valid}
    assert not broken, f"false alarms when a commit lands before statement {broken}"


async def test_verify_twice_in_one_session_sees_new_events(
    migrated_engine: AsyncEngine,
) -> None:
    """A long-lived session (the app's sessionmaker keeps objects after commit) verifying again
    after another transaction committed compares the walk with the current head."""
    sessions = create_sessionmaker(migrated_engine)
    async with sessions() as checker:
        first = await verify_chain(checker)
        assert first.valid, first
        await checker.commit()

        async with sessions() as writer, writer.begin():
            await record_event(
                writer, AuditContext.system(), action="test.between", category=AuditCategory.DATA
            )

        second = await verify_chain(checker)
        assert second.valid, second
        assert second.events_checked == first.events_checked + 1
