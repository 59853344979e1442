"""Concurrent writers and chainers in independent transactions keep one unbroken chain.

These tests cannot use `db_session`: on SQLite it holds the write lock for the whole test. They
run on a database of their own (`isolated_settings`), whose sessions commit for real.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.session import create_engine, create_sessionmaker
from app.models.audit import ActorType, AuditCategory, AuditEvent
from app.services.audit import (
    AuditContext,
    ChainSettings,
    ChainVerification,
    RecordedEvent,
    chain_pending_events,
    record_event,
    verify_chain,
)
from app.services.audit.chain import lock_state
from tests.audit.helpers import chain_settings, read_state, stored_events, stored_links

WORKERS = 10
TRANSACTIONS_PER_WORKER = 2
EVENTS_PER_TRANSACTION = 3


class RollbackRequestedError(Exception):
    """Raised inside a worker's transaction to roll it back."""


@dataclass
class Outcome:
    committed: list[uuid.UUID] = field(default_factory=list)
    rolled_back: list[uuid.UUID] = field(default_factory=list)
    rolled_back_numbers: list[int] = field(default_factory=list)


def _rolls_back(worker: int, transaction: int) -> bool:
    return (worker + transaction) % 3 == 0


@pytest.fixture
async def engine(isolated_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(isolated_settings)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
def chain(tmp_path: Path) -> ChainSettings:
    return chain_settings(tmp_path / "checkpoints", gap_wait_seconds=0.3)


async def _record(sessions: async_sessionmaker[AsyncSession], action: str) -> RecordedEvent:
    async with sessions() as session, session.begin():
        return await record_event(
            session, AuditContext.system(), action=action, category=AuditCategory.DATA
        )


async def _chain(
    sessions: async_sessionmaker[AsyncSession], chain: ChainSettings, **options: Any
) -> Any:
    async with sessions() as session, session.begin():
        return await chain_pending_events(session, chain, **options)


async def _verify(
    sessions: async_sessionmaker[AsyncSession], chain: ChainSettings
) -> ChainVerification:
    async with sessions() as session, session.begin():
        return await verify_chain(session, chain)


async def test_writers_share_no_lock_and_the_chainer_links_every_commit_once(
    sessions: async_sessionmaker[AsyncSession], chain: ChainSettings, is_postgres: bool
) -> None:
    run = f"concurrency-{uuid.uuid4().hex}"
    start = asyncio.Event()

    async def worker(index: int) -> Outcome:
        outcome = Outcome()
        context = AuditContext(ActorType.USER, f"worker-{index}", request_id=run)
        await start.wait()
        for transaction in range(TRANSACTIONS_PER_WORKER):
            ids: list[uuid.UUID] = []
            numbers: list[int] = []
            try:
                async with sessions() as session, session.begin():
                    for number in range(EVENTS_PER_TRANSACTION):
                        recorded = await record_event(
                            session,
                            context,
                            action="test.concurrent_write",
                            category=AuditCategory.DATA,
                            entity_type="worker",
                            entity_id=f"{index}.{transaction}.{number}",
                            after={"worker": index, "transaction": transaction, "n": number},
                        )
                        ids.append(recorded.id)
                        numbers.append(recorded.sequence)
                        # Let the other workers run between the statements of a transaction.
                        await asyncio.sleep(0)
                    if _rolls_back(index, transaction):
                        raise RollbackRequestedError
            except RollbackRequestedError:
                outcome.rolled_back += ids
                outcome.rolled_back_numbers += numbers
            else:
                outcome.committed += ids
        return outcome

    tasks = [asyncio.ensure_future(worker(index)) for index in range(WORKERS)]
    await asyncio.sleep(0)
    start.set()
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    committed = [event_id for outcome in outcomes for event_id in outcome.committed]
    rolled_back = [event_id for outcome in outcomes for event_id in outcome.rolled_back]
    unused = [number for outcome in outcomes for number in outcome.rolled_back_numbers]
    assert committed and rolled_back

    result = await _chain(sessions, chain)
    assert result.waiting_at is None
    async with sessions() as session:
        events = await stored_events(session)
        links = await stored_links(session)
        ours = (
            await session.scalars(select(AuditEvent.id).where(AuditEvent.request_id == run))
        ).all()
    assert sorted(ours) == sorted(committed)
    # Every position from 1 linked once: each committed event, and on PostgreSQL a gap for each
    # number a rolled-back insert took before the last committed one (numbers after it wait
    # for a later event: nothing tells a rolled-back number from one still to come).
    assert [link.sequence for link in links] == list(range(1, len(links) + 1))
    linked = [link.event_id for link in links if link.event_id is not None]
    assert sorted(linked) == sorted(event.id for event in events) == sorted(committed)
    gaps = [link.sequence for link in links if link.event_id is None]
    if is_postgres:
        assert gaps == sorted(number for number in unused if number < links[-1].sequence)
    else:
        assert gaps == []
    assert len({link.prev_mac for link in links}) == len(links)
    # Each transaction's events stay in order within the chain.
    position = {link.event_id: link.sequence for link in links}
    for index in range(WORKERS):
        own = sorted(
            (event for event in events if event.actor_id == f"worker-{index}"),
            key=lambda event: position[event.id],
        )
        assert [event.entity_id for event in own] == [
            f"{index}.{transaction}.{number}"
            for transaction in range(TRANSACTIONS_PER_WORKER)
            if not _rolls_back(index, transaction)
            for number in range(EVENTS_PER_TRANSACTION)
        ]
    verification = await _verify(sessions, chain)
    assert verification.valid, verification
    assert verification.events_checked == len(committed)
    assert verification.gaps_checked == len(gaps)


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
async def test_the_chainer_waits_at_a_number_a_running_transaction_holds(
    sessions: async_sessionmaker[AsyncSession],
    chain: ChainSettings,
    is_postgres: bool,
    outcome: str,
) -> None:
    """A later number committed first is not linked past an earlier one still in flight; once
    that transaction ends, its event is linked, or its number recorded as a gap."""
    if not is_postgres:
        pytest.skip("SQLite runs one writer at a time")
    first = await _record(sessions, "test.first")
    async with sessions() as slow:
        await slow.begin()
        held = await record_event(
            slow, AuditContext.system(), action="test.slow", category=AuditCategory.DATA
        )
        after = await _record(sessions, "test.after")
        assert first.sequence < held.sequence < after.sequence

        started = time.monotonic()
        run = await _chain(sessions, chain)
        waited = time.monotonic() - started
        assert run.waiting_at == held.sequence
        assert run.last_sequence == held.sequence - 1
        assert chain.gap_wait_seconds <= waited < chain.gap_wait_seconds + 2
        async with sessions() as session:
            assert after.id not in {link.event_id for link in await stored_links(session)}
        if outcome == "commit":
            await slow.commit()
        else:
            await slow.rollback()

    run = await _chain(sessions, chain)
    assert run.waiting_at is None
    async with sessions() as session:
        links = {link.sequence: link.event_id for link in await stored_links(session)}
    assert links[held.sequence] == (held.id if outcome == "commit" else None)
    assert links[after.sequence] == after.id
    verification = await _verify(sessions, chain)
    assert verification.valid, verification


async def test_a_commit_during_the_wait_is_linked_in_the_same_run(
    sessions: async_sessionmaker[AsyncSession], chain: ChainSettings, is_postgres: bool
) -> None:
    if not is_postgres:
        pytest.skip("SQLite runs one writer at a time")
    patient = dataclasses.replace(chain, gap_wait_seconds=10)
    async with sessions() as slow:
        await slow.begin()
        held = await record_event(
            slow, AuditContext.system(), action="test.slow", category=AuditCategory.DATA
        )
        after = await _record(sessions, "test.after")
        chaining = asyncio.ensure_future(_chain(sessions, patient))
        await asyncio.sleep(0.5)
        assert not chaining.done()
        started = time.monotonic()
        await slow.commit()
    run = await asyncio.wait_for(chaining, timeout=5)
    assert time.monotonic() - started < 2
    assert run.waiting_at is None
    assert run.last_sequence == after.sequence
    async with sessions() as session:
        links = {link.sequence: link.event_id for link in await stored_links(session)}
    assert (links[held.sequence], links[after.sequence]) == (held.id, after.id)


async def test_two_chainers_never_fork_the_chain(
    sessions: async_sessionmaker[AsyncSession], chain: ChainSettings, is_postgres: bool
) -> None:
    if not is_postgres:
        pytest.skip("SQLite runs one writer at a time")
    for index in range(30):
        await _record(sessions, f"test.{index}")
    small = dataclasses.replace(chain, batch_size=4)
    runs = await asyncio.gather(*(_chain(sessions, small) for _ in range(3)))
    assert sum(run.linked_events for run in runs) == 30
    async with sessions() as session:
        links = await stored_links(session)
        state = await read_state(session)
    assert [link.sequence for link in links] == list(range(1, 31))
    assert state.last_sequence == 30
    assert (await _verify(sessions, chain)).valid

    # A chainer that must not wait finds the state taken and returns at once.
    async with sessions() as holder, holder.begin():
        await lock_state(holder)
        await _record(sessions, "test.while_locked")
        started = time.monotonic()
        busy = await _chain(sessions, chain, wait_for_lock=False)
        assert busy.busy
        assert time.monotonic() - started < 1


async def test_writers_do_not_wait_for_a_chainer_holding_the_state(
    sessions: async_sessionmaker[AsyncSession], is_postgres: bool
) -> None:
    if not is_postgres:
        pytest.skip("on SQLite every writer waits for the single write lock")
    async with sessions() as holder, holder.begin():
        await lock_state(holder)
        recorded = await asyncio.wait_for(_record(sessions, "test.unblocked"), timeout=2)
    async with sessions() as session:
        assert recorded.id in {event.id for event in await stored_events(session)}


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
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    chain: ChainSettings,
    is_postgres: bool,
) -> None:
    """A writer committing while `verify_chain` runs must not make a sound chain look broken.

    The chain is verified once per point where another transaction can commit an event: before
    the 1st statement of the verification, before the 2nd, and so on until the verification ends
    before reaching it. PostgreSQL runs at READ COMMITTED, where each statement sees the latest
    commits; there the verification chains first and holds the chain state. On SQLite a writer
    would wait for the verifier's write lock, so there the verifier only reads, from one
    snapshot (a deferred transaction in WAL mode).
    """
    for index in range(3):
        await _record(sessions, f"test.before.{index}")

    async def commit_one_event() -> None:
        await _record(sessions, "test.during_verify")

    verifier_sessions = async_sessionmaker(
        engine if is_postgres else engine.execution_options(sqlite_deferred=True),
        class_=_CommitsDuringVerify,
        expire_on_commit=False,
    )
    results: dict[int, ChainVerification] = {}
    for inject_before in itertools.count(1):
        assert inject_before < 60, "verify_chain never finished before the injection point"
        if not is_postgres:
            await _chain(sessions, chain)
        async with verifier_sessions() as verifier, verifier.begin():
            assert isinstance(verifier, _CommitsDuringVerify)
            verifier.inject_before = inject_before
            verifier.writer = commit_one_event
            result = await verify_chain(verifier, chain, chain_first=is_postgres)
        if not verifier.wrote:
            break
        results[inject_before] = result

    assert results, "no commit was injected"
    broken = {point: result for point, result in results.items() if not result.valid}
    assert not broken, f"false alarms when a commit lands before statement {broken}"
    final = await _verify(sessions, chain)
    assert final.valid, final
    assert final.events_checked == 3 + len(results)


async def test_verify_twice_in_one_session_sees_new_events(
    sessions: async_sessionmaker[AsyncSession], chain: ChainSettings
) -> None:
    """A long-lived session (the app's sessionmaker keeps objects after commit) verifying again
    after another transaction committed verifies the new event too."""
    await _record(sessions, "test.first")
    async with sessions() as checker:
        first = await verify_chain(checker, chain)
        assert first.valid, first
        await checker.commit()
        await _record(sessions, "test.between")
        second = await verify_chain(checker, chain)
        assert second.valid, second
        assert second.events_checked == first.events_checked + 1
        await checker.commit()
