"""The writer `record_event`: sequence, links, hashes and payloads as stored; `verify_chain` on a
sound chain; what `AuditContext` records."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import GENESIS_HASH, ActorType, AuditCategory
from app.services import audit
from app.services.audit import (
    AuditContext,
    canonical_event,
    event_hash,
    record_event,
    verify_chain,
)
from tests.audit.helpers import Head, read_head, record_many, stored_event, stored_events

STUDY = uuid.UUID("0b8e5c7e-3f5a-4d8a-9a57-1f2f6c1e0a01")
PARTICIPANT = uuid.UUID("6f1c2d3e-4b5a-4c6d-8e7f-901a2b3c4d5e")
MOMENT = datetime(2026, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)
PARIS_MOMENT = datetime(2026, 6, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))


# --- sequence, links and hashes --------------------------------------------------------------


async def test_first_event_links_to_genesis_and_each_next_to_the_previous(
    empty_chain: AsyncSession,
) -> None:
    session = empty_chain
    written = await record_many(session, 4)

    assert [event.sequence for event in written] == [1, 2, 3, 4]
    assert written[0].prev_hash == GENESIS_HASH == "0" * 64
    for previous, event in itertools.pairwise(written):
        assert event.prev_hash == previous.hash

    stored = await stored_events(session)
    assert [event.id for event in stored] == [event.id for event in written]
    prev_hash = GENESIS_HASH
    for event in stored:
        assert event.prev_hash == prev_hash
        assert event.hash == event_hash(prev_hash, event)
        assert re.fullmatch(r"[0-9a-f]{64}", event.hash)
        prev_hash = event.hash
    assert len({event.hash for event in stored}) == 4

    assert await read_head(session) == Head(4, stored[-1].hash)


async def test_sequence_continues_from_the_chain_head(db_session: AsyncSession) -> None:
    """Whatever the chain already holds, the next event is head + 1, linked to the head's hash."""
    before = await read_head(db_session)
    first, second = await record_many(db_session, 2)

    assert first.sequence == before.last_sequence + 1
    assert first.prev_hash == before.last_hash
    assert second.sequence == before.last_sequence + 2
    assert second.prev_hash == first.hash
    after = await read_head(db_session)
    assert (after.last_sequence, after.last_hash) == (second.sequence, second.hash)

    result = await verify_chain(db_session)
    assert result.valid, result
    assert result.events_checked == after.last_sequence
    assert result.last_hash == second.hash


async def test_hash_is_sha256_of_prev_hash_and_canonical_content(
    empty_chain: AsyncSession,
) -> None:
    """The stored hash follows the documented construction and covers every content field."""
    (event,) = await record_many(empty_chain, 1, after={"score": 12})
    stored = await stored_event(empty_chain, event.id)

    canonical = canonical_event(stored)
    expected = hashlib.sha256(GENESIS_HASH.encode() + b"\n" + canonical).hexdigest()
    assert stored.hash == expected
    payload = json.loads(canonical)
    assert payload["sequence"] == 1
    assert payload["after"] == {"score": 12}
    assert payload["action"] == "test.event"
    assert payload["occurred_at"] == stored.occurred_at.isoformat(timespec="microseconds")
    assert payload["id"] == str(stored.id)
    assert set(payload) == {
        "id",
        "sequence",
        "occurred_at",
        "actor_type",
        "actor_id",
        "action",
        "category",
        "entity_type",
        "entity_id",
        "study_id",
        "participant_id",
        "before",
        "after",
        "ip",
        "user_agent",
        "request_id",
        "reason",
    }
    # A different predecessor gives a different hash for the same content.
    assert event_hash("f" * 64, stored) != stored.hash


async def test_occurred_at_is_aware_utc_and_survives_the_round_trip(
    empty_chain: AsyncSession,
) -> None:
    before = datetime.now(UTC)
    (event,) = await record_many(empty_chain, 1)
    after = datetime.now(UTC)

    stored = await stored_event(empty_chain, event.id)
    assert stored.occurred_at.tzinfo is not None
    assert stored.occurred_at.utcoffset() == timedelta(0)
    assert stored.occurred_at == event.occurred_at
    assert before <= stored.occurred_at <= after
    assert canonical_event(stored) == canonical_event(event)


async def test_rolled_back_event_leaves_no_gap(empty_chain: AsyncSession) -> None:
    """An event commits or rolls back with the caller's transaction, and the head with it."""
    session = empty_chain
    (first,) = await record_many(session, 1)

    class RollbackRequestedError(Exception):
        pass

    with pytest.raises(RollbackRequestedError):
        async with session.begin_nested():
            await record_many(session, 2)
            raise RollbackRequestedError

    head = await read_head(session)
    assert (head.last_sequence, head.last_hash) == (1, first.hash)
    (second,) = await record_many(session, 1)
    assert second.sequence == 2
    assert second.prev_hash == first.hash
    assert [event.sequence for event in await stored_events(session)] == [1, 2]
    result = await verify_chain(session)
    assert result.valid, result
    assert result.events_checked == 2


# --- payloads ---------------------------------------------------------------------------------


def _payload() -> dict[str, Any]:
    return {
        "name": "Zoë Ångström — 日本語 ✓ 🧠",
        "quote": 'He said "ok"\n\ttab \\ backslash',
        "scores": [1, 2.5, -3.75, [0.1, 0.2, {"deep": ["x", None, True, False]}]],
        "ratio": 0.1 + 0.2,
        "pi": 3.141592653589793,
        "tiny": 1e-7,
        "zero": 0.0,
        "one": 1.0,
        "negative": -42,
        "big_int": 2**63 + 1,
        "study_id": STUDY,
        "at": MOMENT,
        "paris": PARIS_MOMENT,
        "nested": {"ids": [STUDY, PARTICIPANT], "when": {"at": MOMENT}},
        "pair": ("a", "b"),
        "amount": Decimal("12.50"),
        "empty": {},
        "empty_list": [],
        "null": None,
    }


def _expected_payload() -> dict[str, Any]:
    return {
        "name": "Zoë Ångström — 日本語 ✓ 🧠",
        "quote": 'He said "ok"\n\ttab \\ backslash',
        "scores": [1, 2.5, -3.75, [0.1, 0.2, {"deep": ["x", None, True, False]}]],
        "ratio": 0.30000000000000004,
        "pi": 3.141592653589793,
        "tiny": 1e-7,
        # Integral floats are stored as ints (PostgreSQL's jsonb would turn 1e16 into one).
        "zero": 0,
        "one": 1,
        "negative": -42,
        "big_int": 9223372036854775809,
        "study_id": str(STUDY),
        "at": str(MOMENT),
        "paris": str(PARIS_MOMENT),
        "nested": {"ids": [str(STUDY), str(PARTICIPANT)], "when": {"at": str(MOMENT)}},
        "pair": ["a", "b"],
        "amount": "12.50",
        "empty": {},
        "empty_list": [],
        "null": None,
    }


def _assert_same_json(actual: Any, expected: Any) -> None:
    """Equal, and with the same JSON types (2.5 stays a float, 1 an int, "1" a string)."""
    assert json.dumps(actual, sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert actual == expected


async def test_before_and_after_are_stored_and_read_back_identically(
    empty_chain: AsyncSession,
) -> None:
    session = empty_chain
    before = _payload()
    after = {**_payload(), "name": "changed", "scores": [[], [[1.5]]]}
    event = await record_event(
        session,
        AuditContext.system(),
        action="data.updated",
        category=AuditCategory.DATA,
        entity_type="participant",
        entity_id=PARTICIPANT,
        study_id=STUDY,
        participant_id=PARTICIPANT,
        before=before,
        after=after,
        reason="Correction requested by the monitor: « visite 2 » ✓",
    )
    expected_before = _expected_payload()
    expected_after = {**_expected_payload(), "name": "changed", "scores": [[], [[1.5]]]}
    _assert_same_json(event.before, expected_before)
    _assert_same_json(event.after, expected_after)

    stored = await stored_event(session, event.id)
    _assert_same_json(stored.before, expected_before)
    _assert_same_json(stored.after, expected_after)
    _assert_same_json(stored.before, event.before)
    _assert_same_json(stored.after, event.after)
    assert stored.entity_type == "participant"
    assert stored.entity_id == str(PARTICIPANT)
    assert stored.study_id == STUDY
    assert stored.participant_id == PARTICIPANT
    assert stored.reason == "Correction requested by the monitor: « visite 2 » ✓"
    assert stored.category == "data"
    assert stored.action == "data.updated"
    # The hash was computed over exactly what is read back.
    assert canonical_event(stored) == canonical_event(event)
    assert stored.hash == event_hash(stored.prev_hash, stored)

    result = await verify_chain(session)
    assert result.valid, result
    assert result.events_checked == 1
    assert result.last_hash == event.hash


async def test_missing_before_and_after_read_back_as_none(empty_chain: AsyncSession) -> None:
    event = await record_event(
        empty_chain, AuditContext.system(), action="auth.login", category=AuditCategory.AUTH
    )
    stored = await stored_event(empty_chain, event.id)
    assert stored.before is None
    assert stored.after is None
    assert stored.entity_type is None
    assert stored.entity_id is None
    assert stored.study_id is None
    assert stored.participant_id is None
    assert stored.reason is None
    assert (await verify_chain(empty_chain)).valid


async def test_payload_is_copied_when_recorded(empty_chain: AsyncSession) -> None:
    """Mutating the caller's dict afterwards changes neither the event nor its hash."""
    after: dict[str, Any] = {"answers": [1, 2], "meta": {"k": "v"}}
    event = await record_event(
        empty_chain, AuditContext.system(), action="x", category=AuditCategory.DATA, after=after
    )
    after["answers"].append(3)
    after["meta"]["k"] = "changed"
    after["new"] = True
    assert event.after == {"answers": [1, 2], "meta": {"k": "v"}}
    assert event.hash == event_hash(event.prev_hash, event)
    stored = await stored_event(empty_chain, event.id)
    assert stored.after == {"answers": [1, 2], "meta": {"k": "v"}}
    assert (await verify_chain(empty_chain)).valid


async def test_key_order_of_the_payload_does_not_matter(empty_chain: AsyncSession) -> None:
    """JSONB reorders keys on PostgreSQL; the canonical form must not depend on order."""
    forward = {f"key_{index:02d}": index for index in range(30)}
    backward = dict(reversed(list(forward.items())))
    event = await record_event(
        empty_chain,
        AuditContext.system(),
        action="x",
        category=AuditCategory.DATA,
        before=forward,
        after=backward,
    )
    stored = await stored_event(empty_chain, event.id)
    assert stored.before == stored.after == forward
    assert canonical_event(stored) == canonical_event(event)
    assert (await verify_chain(empty_chain)).valid


@pytest.mark.parametrize(
    "value",
    [1e16, 1e20, 1.5e300, -1e17, -0.0, 0.0, 1.0, 2.5, 1e15 + 0.5, 5e-324, -1e-9],
    ids=str,
)
async def test_any_finite_float_keeps_the_chain_verifiable(
    empty_chain: AsyncSession, value: float
) -> None:
    """A recorded float, whatever its magnitude or sign, must not make a sound chain look
    tampered with, and reads back as the same number.

    On PostgreSQL, jsonb stores numbers as `numeric`: 1e16 comes back as the integer
    10000000000000000 and -0.0 as 0.0, so the canonical JSON hashed at write time must already
    be the one computed from what is read back.
    """
    event = await record_event(
        empty_chain,
        AuditContext.system(),
        action="assessment.scored",
        category=AuditCategory.ASSESSMENT,
        after={"value": value, "in_list": [value, [value]]},
    )
    stored = await stored_event(empty_chain, event.id)
    assert stored.after is not None
    assert stored.after["value"] == value
    assert stored.after["in_list"] == [value, [value]]
    _assert_same_json(stored.after, event.after)
    assert canonical_event(stored) == canonical_event(event)
    result = await verify_chain(empty_chain)
    assert result.valid, result


# --- verify_chain on a sound chain ------------------------------------------------------------


async def test_verify_empty_chain_is_valid(empty_chain: AsyncSession) -> None:
    result = await verify_chain(empty_chain)
    assert result.valid
    assert result.events_checked == 0
    assert result.last_hash == GENESIS_HASH
    assert result.first_broken_sequence is None
    assert result.first_broken_event_id is None
    assert result.problem is None
    assert result.verified_at is not None
    assert result.verified_at.tzinfo is not None


async def test_verify_walks_across_batches(
    empty_chain: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "VERIFY_BATCH_SIZE", 2)
    written = await record_many(empty_chain, 7)
    empty_chain.expunge_all()
    result = await verify_chain(empty_chain)
    assert result.valid, result
    assert result.events_checked == 7
    assert result.last_hash == written[-1].hash


async def test_verify_counts_events_recorded_in_the_same_session(
    empty_chain: AsyncSession,
) -> None:
    written = await record_many(empty_chain, 3)
    result = await verify_chain(empty_chain)
    assert result.valid, result
    assert result.events_checked == 3
    assert result.last_hash == written[-1].hash
    written += await record_many(empty_chain, 2)
    result = await verify_chain(empty_chain)
    assert result.valid, result
    assert result.events_checked == 5
    assert result.last_hash == written[-1].hash


# --- AuditContext -----------------------------------------------------------------------------


async def test_context_fields_are_stored(empty_chain: AsyncSession) -> None:
    user_agent = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) " + "é" * 400
    context = AuditContext(
        actor_type=ActorType.USER,
        actor_id="user-7b1d",
        ip="2001:db8::8a2e:370:7334",
        user_agent=user_agent,
        request_id="req-5f0c3a",
    )
    event = await record_event(
        empty_chain, context, action="consent.signed", category=AuditCategory.CONSENT
    )
    assert event.user_agent == user_agent[:255]

    stored = await stored_event(empty_chain, event.id)
    assert stored.actor_type == "user"
    assert stored.actor_id == "user-7b1d"
    assert stored.ip == "2001:db8::8a2e:370:7334"
    assert stored.user_agent == user_agent[:255]
    assert stored.user_agent is not None
    assert len(stored.user_agent) == 255
    assert stored.request_id == "req-5f0c3a"
    assert stored.category == "consent"
    # The hash covers the truncated value, the one stored.
    assert stored.hash == event_hash(stored.prev_hash, stored)
    assert (await verify_chain(empty_chain)).valid


@pytest.mark.parametrize(
    ("user_agent", "stored_user_agent"),
    [
        (None, None),
        ("", None),
        ("curl/8.5.0", "curl/8.5.0"),
        ("u" * 255, "u" * 255),
        ("u" * 256, "u" * 255),
    ],
    ids=["none", "empty", "short", "exactly-255", "256"],
)
async def test_user_agent_is_kept_up_to_255_characters(
    empty_chain: AsyncSession, user_agent: str | None, stored_user_agent: str | None
) -> None:
    context = AuditContext(ActorType.ANONYMOUS, user_agent=user_agent)
    event = await record_event(
        empty_chain, context, action="auth.login_failed", category=AuditCategory.AUTH
    )
    stored = await stored_event(empty_chain, event.id)
    assert stored.user_agent == stored_user_agent
    assert stored.actor_type == "anonymous"
    assert stored.actor_id is None


async def test_system_context(empty_chain: AsyncSession) -> None:
    context = AuditContext.system()
    assert context == AuditContext(ActorType.SYSTEM, "system")
    assert context.ip is None
    assert context.user_agent is None
    assert context.request_id is None
    assert AuditContext.system("req-42").request_id == "req-42"

    event = await record_event(
        empty_chain, AuditContext.system("req-42"), action="x", category=AuditCategory.CONFIG
    )
    stored = await stored_event(empty_chain, event.id)
    assert stored.actor_type == "system"
    assert stored.actor_id == "system"
    assert stored.request_id == "req-42"
    assert stored.ip is None
    assert stored.user_agent is None


async def test_as_actor_keeps_the_request_and_changes_the_actor(
    empty_chain: AsyncSession,
) -> None:
    anonymous = AuditContext(ActorType.ANONYMOUS, None, "198.51.100.4", "UA/1", "req-1")
    participant = anonymous.as_actor(ActorType.PARTICIPANT, "p-17")
    assert participant == AuditContext(
        ActorType.PARTICIPANT, "p-17", "198.51.100.4", "UA/1", "req-1"
    )
    assert anonymous.actor_type is ActorType.ANONYMOUS
    with pytest.raises(dataclasses.FrozenInstanceError):
        anonymous.actor_id = "someone"  # type: ignore[misc]

    event = await record_event(
        empty_chain, participant, action="visit.started", category=AuditCategory.VISIT
    )
    stored = await stored_event(empty_chain, event.id)
    assert (stored.actor_type, stored.actor_id) == ("participant", "p-17")
    assert (stored.ip, stored.user_agent, stored.request_id) == ("198.51.100.4", "UA/1", "req-1")
