"""Tampering with stored events, behind the append-only triggers, is found by `verify_chain` at
exactly the altered event.

Each test works on a chain of five events emptied back to genesis (`empty_chain`) and alters it
inside the test's transaction, which is rolled back afterwards (triggers included on SQLite).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import GENESIS_HASH, AuditChainHead, AuditEvent
from app.services import audit
from app.services.audit import CHAIN_HEAD_ID, ChainVerification, event_hash, verify_chain
from tests.audit.helpers import (
    append_only_bypassed,
    delete_stored,
    record_many,
    stored_events,
    tamper,
)

CHAIN_LENGTH = 5


@pytest.fixture
async def chain(empty_chain: AsyncSession) -> list[AuditEvent]:
    """Five sound events, sequences 1 to 5, as stored."""
    await record_many(empty_chain, CHAIN_LENGTH, after={"score": 10, "items": [1, 2, 3]})
    events = await stored_events(empty_chain)
    assert [event.sequence for event in events] == [1, 2, 3, 4, 5]
    result = await verify_chain(empty_chain)
    assert result.valid, result
    assert result.events_checked == CHAIN_LENGTH
    return events


def assert_broken_at(
    result: ChainVerification,
    event: AuditEvent,
    problem_mentions: str,
    *,
    events_checked: int | None = None,
) -> None:
    """Broken at `event`, after `events_checked` sound events (by default all those before it)."""
    assert not result.valid, result
    assert result.first_broken_sequence == event.sequence, result
    assert result.first_broken_event_id == event.id, result
    expected_checked = event.sequence - 1 if events_checked is None else events_checked
    assert result.events_checked == expected_checked, result
    assert result.problem is not None
    assert problem_mentions in result.problem, result.problem
    assert result.last_hash is None
    assert result.verified_at is not None


def _content_changes(event: AuditEvent) -> dict[str, dict[str, Any]]:
    return {
        "after": {"after": {"score": 11, "items": [1, 2, 3]}},
        "after-nested": {"after": {"score": 10, "items": [1, 2, 4]}},
        "after-removed": {"after": None},
        "before": {"before": {"score": 9}},
        "action": {"action": "test.other_event"},
        "category": {"category": "consent"},
        "actor_type": {"actor_type": "user"},
        "actor_id": {"actor_id": "someone-else"},
        "entity_type": {"entity_type": "participant"},
        "entity_id": {"entity_id": "probe-99"},
        "study_id": {"study_id": uuid.uuid4()},
        "participant_id": {"participant_id": uuid.uuid4()},
        "occurred_at": {"occurred_at": event.occurred_at - timedelta(microseconds=1)},
        "ip": {"ip": "203.0.113.66"},
        "user_agent": {"user_agent": "forged"},
        "request_id": {"request_id": "req-forged"},
        "reason": {"reason": "added after the fact"},
        "hash": {"hash": "e" * 64},
    }


CHANGED_FIELDS = [
    "after",
    "after-nested",
    "after-removed",
    "before",
    "action",
    "category",
    "actor_type",
    "actor_id",
    "entity_type",
    "entity_id",
    "study_id",
    "participant_id",
    "occurred_at",
    "ip",
    "user_agent",
    "request_id",
    "reason",
    "hash",
]


def test_every_hashed_column_is_tampered_with() -> None:
    """The parametrization below covers each column the hash protects, and the hash itself."""
    hashed = {column.name for column in AuditEvent.__table__.columns} - {"id", "prev_hash"}
    assert {name.split("-")[0] for name in CHANGED_FIELDS} | {"sequence"} == hashed


@pytest.mark.parametrize("changed", CHANGED_FIELDS)
@pytest.mark.parametrize("position", [1, 3, 5], ids=["first", "middle", "last"])
async def test_changed_content_is_found_at_that_event(
    empty_chain: AsyncSession,
    chain: list[AuditEvent],
    is_postgres: bool,
    changed: str,
    position: int,
) -> None:
    target = chain[position - 1]
    await tamper(empty_chain, is_postgres, position, **_content_changes(target)[changed])

    result = await verify_chain(empty_chain)
    assert_broken_at(result, target, "hash does not match the event's content")


async def test_changed_after_content_is_reported_with_the_hash_problem(
    empty_chain: AsyncSession, chain: list[AuditEvent], is_postgres: bool
) -> None:
    await tamper(empty_chain, is_postgres, 2, after={"score": 100, "items": [1, 2, 3]})
    assert [event.after for event in await stored_events(empty_chain)][1] == {
        "score": 100,
        "items": [1, 2, 3],
    }
    result = await verify_chain(empty_chain)
    assert_broken_at(result, chain[1], "hash")


async def test_changed_action_is_found(
    empty_chain: AsyncSession, chain: list[AuditEvent], is_postgres: bool
) -> None:
    await tamper(empty_chain, is_postgres, 4, action="auth.login")
    assert_broken_at(await verify_chain(empty_chain), chain[3], "hash")


async def test_content_change_with_recomputed_hash_breaks_the_next_link(
    empty_chain: AsyncSession, chain: list[AuditEvent], is_postgres: bool
) -> None:
    """Recomputing the altered event's own hash only moves the break to the next event."""
    forged = await stored_events(empty_chain)
    target = forged[1]
    target.after = {"score": 0, "items": []}
    await tamper(
        empty_chain,
        is_postgres,
        2,
        after=target.after,
        hash=event_hash(target.prev_hash, target),
    )
    assert_broken_at(await verify_chain(empty_chain), chain[2], "prev_hash does not match")


async def test_deleted_middle_event_is_reported_at_the_next_event(
    empty_chain: AsyncSession, chain: list[AuditEvent], is_postgres: bool
) -> None:
    await delete_stored(empty_chain, is_postgres, 3)
    result = await verify_chain(empty_chain)
    assert_broken_at(result, chain[3], "sequence 4 found where 3 was expected", events_checked=2)


async def test_deleted_first_event_is_reported(
    empty_chain: AsyncSession, chain: list[AuditEvent], is_postgres: bool
) -> None:
    await delete_stored(empty_chain, is_postgres, 1)
    assert_broken_at(
        await verify_chain(empty_chain),
        chain[1],
        "sequence 2 found where 1 was expected",
        events_checked=0,
    )


async def test_deleted_events_renumbered_break_the_prev_hash_link(
    empty_chain: AsyncSession, chain: list[AuditEvent], is_postgres: bool
) -> None:
    """Closing the sequence gap after a deletion leaves the next prev_hash pointing nowhere."""
    await delete_stored(empty_chain, is_postgres, 3)
    for sequence in (4, 5):
        await tamper(empty_chain, is_postgres, sequence, sequence=sequence - 1)
    await empty_chain.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == CHAIN_HEAD_ID)
        .values(last_sequence=4)
        .execution_options(synchronize_session=False)
    )
    result = await verify_chain(empty_chain)
    assert not result.valid
    assert result.first_broken_sequence == 3
    assert result.first_broken_event_id == chain[3].id
    assert result.problem == "prev_hash does not match the previous event's hash"


async def test_forged_prev_hash_is_found_at_that_event(
    empty_chain: AsyncSession, chain: list[AuditEvent], is_postgres: bool
) -> None:
    await tamper(empty_chain, is_postgres, 3, prev_hash=chain[0].hash)
    assert_broken_at(await verify_chain(empty_chain), chain[2], "prev_hash")


async def test_forged_genesis_link_in_the_middle_is_found(
    empty_chain: AsyncSession, chain: list[AuditEvent], is_postgres: bool
) -> None:
    await tamper(empty_chain, is_postgres, 2, prev_hash=GENESIS_HASH)
    assert_broken_at(await verify_chain(empty_chain), chain[1], "prev_hash")


async def test_relinking_around_a_deleted_event_is_found(
    empty_chain: AsyncSession, chain: list[AuditEvent], is_postgres: bool
) -> None:
    """Cut event 3 out and make event 4 a consistent successor of event 2 (renumbered, re-linked
    and re-hashed): the forgery is self-consistent up to there, and found at the next event."""
    await delete_stored(empty_chain, is_postgres, 3)
    relinked = next(event for event in await stored_events(empty_chain) if event.sequence == 4)
    relinked.sequence = 3
    relinked.prev_hash = chain[1].hash
    await tamper(
        empty_chain,
        is_postgres,
        4,
        sequence=3,
        prev_hash=chain[1].hash,
        hash=event_hash(chain[1].hash, relinked),
    )
    await tamper(empty_chain, is_postgres, 5, sequence=4)
    result = await verify_chain(empty_chain)
    assert not result.valid
    assert result.first_broken_sequence == 4
    assert result.first_broken_event_id == chain[4].id
    assert result.events_checked == 3
    assert result.problem == "prev_hash does not match the previous event's hash"


async def test_rewritten_tail_is_caught_by_the_chain_head(
    empty_chain: AsyncSession, chain: list[AuditEvent], is_postgres: bool
) -> None:
    """Even a forged last event with consistent links and hash disagrees with the head row."""
    forged = (await stored_events(empty_chain))[-1]
    forged.after = {"score": 0, "items": []}
    await tamper(
        empty_chain,
        is_postgres,
        5,
        after=forged.after,
        hash=event_hash(forged.prev_hash, forged),
    )
    result = await verify_chain(empty_chain)
    assert not result.valid
    assert result.events_checked == CHAIN_LENGTH
    assert result.first_broken_sequence == CHAIN_LENGTH + 1
    assert result.problem == "events are missing at the end of the chain"


@pytest.mark.parametrize("deleted", [(5,), (4, 5), (1, 2, 3, 4, 5)], ids=["1", "2", "all"])
async def test_deleted_tail_is_found_through_the_chain_head(
    empty_chain: AsyncSession,
    chain: list[AuditEvent],
    is_postgres: bool,
    deleted: tuple[int, ...],
) -> None:
    await delete_stored(empty_chain, is_postgres, *deleted)
    remaining = CHAIN_LENGTH - len(deleted)
    result = await verify_chain(empty_chain)
    assert not result.valid
    assert result.events_checked == remaining
    assert result.first_broken_sequence == remaining + 1
    assert result.first_broken_event_id is None
    assert result.problem == "events are missing at the end of the chain"


async def test_tampered_chain_head_is_found(
    empty_chain: AsyncSession, chain: list[AuditEvent]
) -> None:
    await empty_chain.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == CHAIN_HEAD_ID)
        .values(last_hash="d" * 64)
        .execution_options(synchronize_session=False)
    )
    result = await verify_chain(empty_chain)
    assert not result.valid
    assert result.events_checked == CHAIN_LENGTH
    assert result.problem == "events are missing at the end of the chain"


async def test_tampering_found_beyond_the_first_batch(
    empty_chain: AsyncSession,
    chain: list[AuditEvent],
    is_postgres: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(audit, "VERIFY_BATCH_SIZE", 2)
    assert (await verify_chain(empty_chain)).valid
    await tamper(empty_chain, is_postgres, 4, reason="slipped in later")
    assert_broken_at(await verify_chain(empty_chain), chain[3], "hash")


async def test_only_the_first_break_is_reported(
    empty_chain: AsyncSession, chain: list[AuditEvent], is_postgres: bool
) -> None:
    await tamper(empty_chain, is_postgres, 4, action="late.change")
    await tamper(empty_chain, is_postgres, 2, action="early.change")
    assert_broken_at(await verify_chain(empty_chain), chain[1], "hash")


async def test_triggers_are_back_after_tampering(
    empty_chain: AsyncSession, chain: list[AuditEvent], is_postgres: bool
) -> None:
    """The bypass used by these tests is scoped: append-only holds again right after it."""
    await tamper(empty_chain, is_postgres, 1, reason="tampered")
    with pytest.raises(DBAPIError, match="append-only"):
        async with empty_chain.begin_nested():
            await empty_chain.execute(text("UPDATE audit_events SET reason = 'again'"))
    with pytest.raises(DBAPIError, match="append-only"):
        async with empty_chain.begin_nested():
            await empty_chain.execute(text("DELETE FROM audit_events"))
    async with append_only_bypassed(empty_chain, is_postgres):
        pass
    with pytest.raises(DBAPIError, match="append-only"):
        async with empty_chain.begin_nested():
            await empty_chain.execute(text("DELETE FROM audit_events WHERE sequence = 5"))


@pytest.mark.parametrize("well_formed", [False, True], ids=["garbage", "well-formed"])
async def test_event_inserted_past_the_chain_head_is_reported(
    empty_chain: AsyncSession, chain: list[AuditEvent], well_formed: bool
) -> None:
    """A row the chain head does not account for, added by a plain INSERT (which the triggers
    allow) instead of `record_event`, is not part of a sound chain.

    With nothing else writing, such a row can only be forged or written around `record_event`;
    it also takes the sequence the next `record_event` will claim.
    """
    forged = AuditEvent(
        id=uuid.uuid4(),
        sequence=CHAIN_LENGTH + 1,
        occurred_at=chain[-1].occurred_at + timedelta(seconds=1),
        actor_type="user",
        actor_id="intruder",
        action="consent.withdrawn",
        category="consent",
        prev_hash=chain[-1].hash if well_formed else GENESIS_HASH,
        hash="f" * 64,
    )
    if well_formed:
        forged.hash = event_hash(forged.prev_hash, forged)
    empty_chain.add(forged)
    await empty_chain.flush()
    empty_chain.expunge_all()

    result = await verify_chain(empty_chain)
    assert not result.valid, result
    assert result.first_broken_sequence in (CHAIN_LENGTH + 1, CHAIN_LENGTH + 2), result
