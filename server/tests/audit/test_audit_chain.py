"""The writer `record_event` (one INSERT, numbered by the database), the chainer that links
committed events into the keyed chain, and `verify_chain` on a sound chain; what `AuditContext`
records."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.json_values import normalize_json
from app.models.audit import GENESIS_MAC, ActorType, AuditCategory, AuditChainState
from app.models.study import Study, StudyStatus
from app.services import audit
from app.services.audit import (
    AuditChainStateError,
    AuditContext,
    ChainSettings,
    canonical_event,
    chain_pending_events,
    record_event,
    verify_chain,
)
from app.services.audit import verify as verify_module
from app.services.audit.chain import gap_content, link_mac
from tests.audit.helpers import (
    KEY_1,
    read_state,
    record_many,
    set_state,
    stored_event,
    stored_events,
    stored_links,
)

STUDY = uuid.UUID("0b8e5c7e-3f5a-4d8a-9a57-1f2f6c1e0a01")
PARTICIPANT = uuid.UUID("6f1c2d3e-4b5a-4c6d-8e7f-901a2b3c4d5e")
MOMENT = datetime(2026, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)
PARIS_MOMENT = datetime(2026, 6, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))


# --- the writer -------------------------------------------------------------------------------


async def test_events_are_numbered_by_the_database_in_order(empty_chain: AsyncSession) -> None:
    written = await record_many(empty_chain, 4)
    assert [event.sequence for event in written] == [1, 2, 3, 4]
    stored = await stored_events(empty_chain)
    assert [(event.id, event.sequence) for event in stored] == [
        (event.id, event.sequence) for event in written
    ]
    assert [event.occurred_at for event in stored] == [event.occurred_at for event in written]


async def test_record_event_adds_one_insert_to_what_the_caller_had_pending(
    empty_chain: AsyncSession, migrated_engine: AsyncEngine
) -> None:
    """No chain-head row to update, no flush of its own: the caller's pending rows (flushed
    first, as services rely on) and one INSERT of the event."""
    statements: list[str] = []

    def capture(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(" ".join(statement.split()).upper())

    async def record() -> None:
        await record_event(
            empty_chain, AuditContext.system(), action="x", category=AuditCategory.DATA
        )

    event.listen(migrated_engine.sync_engine, "before_cursor_execute", capture)
    try:
        await record()
        alone = list(statements)
        statements.clear()
        empty_chain.add(
            Study(id=uuid.uuid4(), code="PENDING-1", name="Pending", status=StudyStatus.DRAFT)
        )
        await record()
        with_pending = list(statements)
    finally:
        event.remove(migrated_engine.sync_engine, "before_cursor_execute", capture)
    assert len(alone) == 1, alone
    assert alone[0].startswith("INSERT INTO AUDIT_EVENTS")
    assert [statement.split(" (")[0] for statement in with_pending] == [
        "INSERT INTO STUDIES",
        "INSERT INTO AUDIT_EVENTS",
    ], with_pending


async def test_writes_never_touch_the_chain_state(empty_chain: AsyncSession) -> None:
    """Without its state row the chainer stops, but audited writes go on."""
    await empty_chain.execute(delete(AuditChainState).execution_options(synchronize_session=False))
    written = await record_many(empty_chain, 2)
    assert [event.sequence for event in written] == [1, 2]
    assert len(await stored_events(empty_chain)) == 2


async def test_a_number_the_database_gives_cannot_be_chosen(
    empty_chain: AsyncSession, is_postgres: bool
) -> None:
    """On PostgreSQL the trigger numbers every row, whatever the INSERT says: a caller with
    INSERT rights cannot park an event far ahead and stall the chainer at a hole."""
    if not is_postgres:
        pytest.skip("SQLite numbers events in the INSERT itself (one writer at a time)")
    await record_many(empty_chain, 1)
    await empty_chain.execute(
        text(
            "INSERT INTO audit_events (id, sequence, occurred_at, actor_type, action, category) "
            "VALUES (:id, 1000000, now(), 'system', 'forged', 'data')"
        ),
        {"id": uuid.uuid4()},
    )
    assert [event.sequence for event in await stored_events(empty_chain)] == [1, 2]


async def test_a_rolled_back_event_is_a_gap_on_postgres_and_reused_on_sqlite(
    empty_chain: AsyncSession, chain: ChainSettings, is_postgres: bool
) -> None:
    session = empty_chain
    (first,) = await record_many(session, 1)

    class RollbackRequestedError(Exception):
        pass

    with pytest.raises(RollbackRequestedError):
        async with session.begin_nested():
            await record_many(session, 2)
            raise RollbackRequestedError

    (last,) = await record_many(session, 1)
    run = await chain_pending_events(session, chain)
    links = await stored_links(session)
    if is_postgres:
        # A sequence hands out numbers outside transactions: 2 and 3 stay unused forever.
        assert last.sequence == 4
        assert [(link.sequence, link.event_id) for link in links] == [
            (1, first.id),
            (2, None),
            (3, None),
            (4, last.id),
        ]
        assert (run.linked_events, run.linked_gaps) == (2, 2)
    else:
        assert last.sequence == 2
        assert [(link.sequence, link.event_id) for link in links] == [(1, first.id), (2, last.id)]
    result = await verify_chain(session, chain)
    assert result.valid, result
    assert result.events_checked == 2
    assert result.gaps_checked == (2 if is_postgres else 0)


# --- the chainer ------------------------------------------------------------------------------


async def test_the_chainer_links_each_event_to_the_previous_with_the_current_key(
    empty_chain: AsyncSession, chain: ChainSettings
) -> None:
    session = empty_chain
    written = await record_many(session, 4)
    assert await stored_links(session) == []

    run = await chain_pending_events(session, chain)
    assert (run.linked_events, run.linked_gaps, run.last_sequence) == (4, 0, 4)
    assert run.waiting_at is None
    state = await read_state(session)
    stored = await stored_events(session)
    links = await stored_links(session)
    assert [link.sequence for link in links] == [1, 2, 3, 4]
    assert [link.event_id for link in links] == [event.id for event in written]
    assert {link.key_id for link in links} == {"k1"}
    prev_mac = GENESIS_MAC
    for link, stored_event_ in zip(links, stored, strict=True):
        assert link.prev_mac == prev_mac
        assert link.mac == link_mac(
            KEY_1, state.chain_id, link.sequence, prev_mac, canonical_event(stored_event_)
        )
        assert re.fullmatch(r"[0-9a-f]{64}", link.mac)
        prev_mac = link.mac
    assert (state.last_sequence, state.last_mac) == (4, links[-1].mac)

    again = await chain_pending_events(session, chain)
    assert (again.linked_events, again.linked_gaps, again.last_sequence) == (0, 0, 4)
    assert len(await stored_links(session)) == 4


async def test_the_mac_is_hmac_sha256_of_the_documented_message(
    empty_chain: AsyncSession, chain: ChainSettings
) -> None:
    """The construction docs/adr/0004-audit-chain.md describes, computed by hand."""
    (recorded,) = await record_many(empty_chain, 1, after={"score": 12})
    await chain_pending_events(empty_chain, chain)
    state = await read_state(empty_chain)
    stored = await stored_event(empty_chain, recorded.id)
    (link,) = await stored_links(empty_chain)

    message = b"\n".join(
        [
            b"metricis-audit-link-v1",
            str(state.chain_id).encode(),
            b"k1",
            b"1",
            GENESIS_MAC.encode(),
            canonical_event(stored),
        ]
    )
    assert link.mac == hmac.new(KEY_1.secret, message, hashlib.sha256).hexdigest()
    # Without the key, the unkeyed construction of earlier releases cannot produce it.
    assert (
        link.mac
        != hashlib.sha256(GENESIS_MAC.encode() + b"\n" + canonical_event(stored)).hexdigest()
    )
    payload = json.loads(canonical_event(stored))
    assert payload["sequence"] == 1
    assert payload["after"] == {"score": 12}
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
    assert gap_content(7) == b'{"gap": true, "sequence": 7}'


async def test_the_chainer_stops_at_its_limit_and_goes_on_from_the_state(
    empty_chain: AsyncSession, chain: ChainSettings
) -> None:
    await record_many(empty_chain, 5)
    first = await chain_pending_events(empty_chain, chain, limit=2)
    assert (first.linked_events, first.last_sequence) == (2, 2)
    small_batches = dataclasses.replace(chain, batch_size=2)
    rest = await chain_pending_events(empty_chain, small_batches)
    assert (rest.linked_events, rest.last_sequence) == (3, 5)
    assert [link.sequence for link in await stored_links(empty_chain)] == [1, 2, 3, 4, 5]
    assert (await verify_chain(empty_chain, chain)).valid


@pytest.mark.parametrize(
    "damage",
    ["missing", "ahead", "rewound", "mac"],
)
async def test_a_damaged_state_stops_the_chainer_and_is_reported_by_verify(
    empty_chain: AsyncSession, chain: ChainSettings, damage: str
) -> None:
    await record_many(empty_chain, 3)
    await chain_pending_events(empty_chain, chain)
    await record_many(empty_chain, 1)
    if damage == "missing":
        await empty_chain.execute(
            delete(AuditChainState).execution_options(synchronize_session=False)
        )
    else:
        damages: dict[str, dict[str, Any]] = {
            "ahead": {"last_sequence": 7},
            "rewound": {"last_sequence": 1},
            "mac": {"last_mac": "a" * 64},
        }
        await set_state(empty_chain, **damages[damage])
    with pytest.raises(AuditChainStateError):
        await chain_pending_events(empty_chain, chain)
    # Writes go on all the same.
    await record_many(empty_chain, 1)

    result = await verify_chain(empty_chain, chain)
    assert not result.valid, result
    assert result.problem is not None
    assert "state" in result.problem
    expected_first_broken = {"missing": None, "ahead": 4, "rewound": 2, "mac": 4}[damage]
    assert result.first_broken_sequence == expected_first_broken, result
    assert len(await stored_links(empty_chain)) == 3


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
    empty_chain: AsyncSession, chain: ChainSettings
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
    stored = await stored_event(session, event.id)
    _assert_same_json(stored.before, expected_before)
    _assert_same_json(stored.after, expected_after)
    assert stored.entity_type == "participant"
    assert stored.entity_id == str(PARTICIPANT)
    assert stored.study_id == STUDY
    assert stored.participant_id == PARTICIPANT
    assert stored.reason == "Correction requested by the monitor: « visite 2 » ✓"
    assert stored.category == "data"
    assert stored.action == "data.updated"
    # The chainer MACs what is read back, and reading again gives the same bytes.
    assert canonical_event(stored) == canonical_event(await stored_event(session, event.id))

    result = await verify_chain(session, chain)
    assert result.valid, result
    assert result.events_checked == 1
    assert result.last_hash == (await stored_links(session))[0].mac


async def test_missing_before_and_after_read_back_as_none(
    empty_chain: AsyncSession, chain: ChainSettings
) -> None:
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
    assert (await verify_chain(empty_chain, chain)).valid


async def test_payload_is_copied_when_recorded(
    empty_chain: AsyncSession, chain: ChainSettings
) -> None:
    """Mutating the caller's dict afterwards changes nothing recorded."""
    after: dict[str, Any] = {"answers": [1, 2], "meta": {"k": "v"}}
    event = await record_event(
        empty_chain, AuditContext.system(), action="x", category=AuditCategory.DATA, after=after
    )
    after["answers"].append(3)
    after["meta"]["k"] = "changed"
    after["new"] = True
    stored = await stored_event(empty_chain, event.id)
    assert stored.after == {"answers": [1, 2], "meta": {"k": "v"}}
    assert (await verify_chain(empty_chain, chain)).valid


async def test_key_order_of_the_payload_does_not_matter(
    empty_chain: AsyncSession, chain: ChainSettings
) -> None:
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
    assert canonical_event(stored) == canonical_event(await stored_event(empty_chain, event.id))
    assert (await verify_chain(empty_chain, chain)).valid


@pytest.mark.parametrize(
    "value",
    [1e16, 1e20, 1.5e300, -1e17, -0.0, 0.0, 1.0, 2.5, 1e15 + 0.5, 5e-324, -1e-9],
    ids=str,
)
async def test_any_finite_float_keeps_the_chain_verifiable(
    empty_chain: AsyncSession, value: float, chain: ChainSettings
) -> None:
    """A recorded float, whatever its magnitude or sign, must not make a sound chain look
    tampered with, and reads back as the same number.

    On PostgreSQL, jsonb stores numbers as `numeric`: 1e16 comes back as the integer
    10000000000000000 and -0.0 as 0.0; the value recorded is normalised so that it reads back
    as what was written, and the chainer and the verifier both MAC what is read back.
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
    _assert_same_json(stored.after, normalize_json({"value": value, "in_list": [value, [value]]}))
    result = await verify_chain(empty_chain, chain)
    assert result.valid, result


# --- verify_chain on a sound chain ------------------------------------------------------------


async def test_verify_empty_chain_is_valid(empty_chain: AsyncSession, chain: ChainSettings) -> None:
    result = await verify_chain(empty_chain, chain)
    assert result.valid
    assert result.events_checked == 0
    assert result.last_sequence == 0
    assert result.last_hash == GENESIS_MAC
    assert result.first_broken_sequence is None
    assert result.first_broken_event_id is None
    assert result.problem is None
    assert result.events_pending == 0
    assert result.verified_at is not None
    assert result.verified_at.tzinfo is not None


async def test_verify_chains_what_is_pending_first(
    empty_chain: AsyncSession, chain: ChainSettings
) -> None:
    await record_many(empty_chain, 3)
    result = await verify_chain(empty_chain, chain)
    assert result.valid, result
    assert result.events_checked == 3
    assert result.last_hash == (await read_state(empty_chain)).last_mac
    unchained = await record_many(empty_chain, 2)
    result = await verify_chain(empty_chain, chain, chain_first=False)
    assert result.valid, result
    assert (result.events_checked, result.events_pending) == (3, 2)
    result = await verify_chain(empty_chain, chain)
    assert (result.events_checked, result.events_pending) == (5, 0)
    assert (await stored_links(empty_chain))[-1].event_id == unchained[-1].id


async def test_verify_walks_across_batches(
    empty_chain: AsyncSession, chain: ChainSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verify_module, "VERIFY_BATCH_SIZE", 2)
    await record_many(empty_chain, 7)
    result = await verify_chain(empty_chain, dataclasses.replace(chain, batch_size=3))
    assert result.valid, result
    assert result.events_checked == 7
    assert result.last_hash == (await stored_links(empty_chain))[-1].mac


async def test_verify_uses_each_links_own_key_after_rotation(
    empty_chain: AsyncSession, tmp_path: Path
) -> None:
    from tests.audit.helpers import KEY_2, chain_settings

    before_rotation = chain_settings(tmp_path / "cp", KEY_1)
    after_rotation = chain_settings(tmp_path / "cp", KEY_2, KEY_1)
    await record_many(empty_chain, 2)
    await chain_pending_events(empty_chain, before_rotation)
    await record_many(empty_chain, 2)
    await chain_pending_events(empty_chain, after_rotation)
    assert [link.key_id for link in await stored_links(empty_chain)] == ["k1", "k1", "k2", "k2"]
    assert (await verify_chain(empty_chain, after_rotation)).valid
    assert audit is not None


# --- AuditContext -----------------------------------------------------------------------------


async def test_context_fields_are_stored(empty_chain: AsyncSession, chain: ChainSettings) -> None:
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

    stored = await stored_event(empty_chain, event.id)
    assert stored.actor_type == "user"
    assert stored.actor_id == "user-7b1d"
    assert stored.ip == "2001:db8::8a2e:370:7334"
    assert stored.user_agent == user_agent[:255]
    assert stored.user_agent is not None
    assert len(stored.user_agent) == 255
    assert stored.request_id == "req-5f0c3a"
    assert stored.category == "consent"
    # The chain covers the truncated value, the one stored.
    assert (await verify_chain(empty_chain, chain)).valid


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
