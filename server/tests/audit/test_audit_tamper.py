"""Tampering with the stored trail, as the database's owner could (triggers lifted, hashes
recomputed, rows deleted, the chain state rewound), is found by `verify_chain`, at the first
position that does not hold.

Each test works on five events chained with key k1 on an emptied trail (`chained`) and alters
it inside the test's transaction, which is rolled back afterwards (triggers included on SQLite).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient

from app.config import Settings
from app.models.audit import GENESIS_MAC, AuditEvent
from app.services.audit import (
    ChainKey,
    ChainKeyring,
    ChainSettings,
    ChainVerification,
    Checkpoint,
    FileCheckpointStore,
    canonical_event,
    chain_pending_events,
    publish_due_checkpoint,
    verify_chain,
)
from app.services.audit import verify as verify_module
from app.services.audit.chain import link_mac
from tests.audit.helpers import (
    KEY_1,
    KEY_2,
    append_only_bypassed,
    delete_links,
    delete_stored,
    read_state,
    record_many,
    set_state,
    stored_events,
    stored_links,
    tamper,
    tamper_link,
)

CHAIN_LENGTH = 5


@pytest.fixture
async def chained(empty_chain: AsyncSession, chain: ChainSettings) -> list[AuditEvent]:
    """Five sound events, sequences 1 to 5, chained; as stored."""
    await record_many(empty_chain, CHAIN_LENGTH, after={"score": 10, "items": [1, 2, 3]})
    run = await chain_pending_events(empty_chain, chain)
    assert run.linked_events == CHAIN_LENGTH
    events = await stored_events(empty_chain)
    assert [event.sequence for event in events] == [1, 2, 3, 4, 5]
    result = await verify_chain(empty_chain, chain)
    assert result.valid, result
    assert result.events_checked == CHAIN_LENGTH
    return events


def assert_broken_at(
    result: ChainVerification,
    sequence: int,
    problem_mentions: str,
    *,
    event_id: uuid.UUID | None = None,
    events_checked: int | None = None,
) -> None:
    """Broken at `sequence`, after `events_checked` sound events (by default those before it)."""
    assert not result.valid, result
    assert result.first_broken_sequence == sequence, result
    if event_id is not None:
        assert result.first_broken_event_id == event_id, result
    expected_checked = sequence - 1 if events_checked is None else events_checked
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
        # An event recorded without a token, claimed afterwards to have come through one.
        "token_id": {"token_id": uuid.uuid4()},
        "id": {"id": uuid.uuid4()},
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
    "token_id",
    "id",
]


def test_every_column_is_tampered_with() -> None:
    """The parametrization below covers every column of an event but its position, which has
    tests of its own."""
    columns = {column.name for column in AuditEvent.__table__.columns}
    assert {name.split("-")[0] for name in CHANGED_FIELDS} | {"sequence"} == columns


@pytest.mark.parametrize("changed", CHANGED_FIELDS)
@pytest.mark.parametrize("position", [1, 3, 5], ids=["first", "middle", "last"])
async def test_changed_content_is_found_at_that_event(
    empty_chain: AsyncSession,
    chain: ChainSettings,
    chained: list[AuditEvent],
    is_postgres: bool,
    changed: str,
    position: int,
) -> None:
    target = chained[position - 1]
    await tamper(empty_chain, is_postgres, position, **_content_changes(target)[changed])
    result = await verify_chain(empty_chain, chain)
    expected = "not the one linked" if changed == "id" else "mac does not match"
    assert_broken_at(result, position, expected)


def _unkeyed(prev: str, event: AuditEvent) -> str:
    """The construction of earlier releases: SHA-256 without a key, which anyone can compute."""
    return hashlib.sha256(prev.encode() + b"\n" + canonical_event(event)).hexdigest()


@pytest.mark.parametrize("recompute", ["unkeyed-sha256", "guessed-key"])
async def test_rewritten_event_with_every_hash_recomputed_is_found(
    empty_chain: AsyncSession,
    chain: ChainSettings,
    chained: list[AuditEvent],
    is_postgres: bool,
    recompute: str,
) -> None:
    """The owner rewrites event 3, then recomputes links 3 to 5 and the state, as the previous
    release let them: without the key the MACs cannot be reproduced."""
    await tamper(empty_chain, is_postgres, 3, after={"score": 0, "items": []})
    events = await stored_events(empty_chain)
    links = await stored_links(empty_chain)
    state = await read_state(empty_chain)
    # The best guess without AUDIT_CHAIN_KEYS: the development key of a default installation.
    guessed = ChainKey("k1", Settings().audit_chain_keys[0][1])
    prev = links[1].mac
    for event in events[2:]:
        if recompute == "unkeyed-sha256":
            mac = _unkeyed(prev, event)
        else:
            mac = link_mac(guessed, state.chain_id, event.sequence, prev, canonical_event(event))
        await tamper_link(empty_chain, is_postgres, event.sequence, prev_mac=prev, mac=mac)
        prev = mac
    await set_state(empty_chain, last_mac=prev)

    result = await verify_chain(empty_chain, chain)
    assert_broken_at(result, 3, "mac does not match the event's content", event_id=events[2].id)


async def test_deleted_tail_and_rewound_state_are_found_through_a_checkpoint(
    empty_chain: AsyncSession, chain: ChainSettings, chained: list[AuditEvent], is_postgres: bool
) -> None:
    checkpoint = await publish_due_checkpoint(empty_chain, chain, force=True)
    assert checkpoint is not None and checkpoint.sequence == CHAIN_LENGTH

    links = await stored_links(empty_chain)
    await delete_stored(empty_chain, is_postgres, 4, 5)
    await delete_links(empty_chain, is_postgres, 4, 5)
    await set_state(empty_chain, last_sequence=3, last_mac=links[2].mac)

    result = await verify_chain(empty_chain, chain)
    assert_broken_at(result, 4, "events were removed from its end")
    assert result.checkpoints_checked == 1
    assert result.last_sequence == 3


async def test_a_consistent_truncation_after_the_last_checkpoint_is_not_visible(
    empty_chain: AsyncSession, chain: ChainSettings, chained: list[AuditEvent], is_postgres: bool
) -> None:
    """The limit of checkpoints, stated: what was chained after the last one can be cut off
    without a trace. AUDIT_CHECKPOINT_EVERY and the interval bound that window."""
    links = await stored_links(empty_chain)
    await delete_stored(empty_chain, is_postgres, 5)
    await delete_links(empty_chain, is_postgres, 5)
    await set_state(empty_chain, last_sequence=4, last_mac=links[3].mac)
    result = await verify_chain(empty_chain, chain)
    assert result.valid, result
    assert result.last_sequence == 4


async def test_a_chain_rewritten_with_the_stolen_key_disagrees_with_the_checkpoints(
    empty_chain: AsyncSession, chain: ChainSettings, chained: list[AuditEvent], is_postgres: bool
) -> None:
    """Even with the key, links cannot be rewritten behind a published checkpoint."""
    state = await read_state(empty_chain)
    links = await stored_links(empty_chain)
    # Checkpoints as if published after event 2 and after event 5.
    for link in (links[1], links[4]):
        await chain.checkpoints.append(
            Checkpoint.sign(KEY_1, state.chain_id, link.sequence, link.mac, link.chained_at)
        )
    await tamper(empty_chain, is_postgres, 4, reason="rewritten with the key")
    events = await stored_events(empty_chain)
    prev = links[2].mac
    for event in events[3:]:
        mac = link_mac(KEY_1, state.chain_id, event.sequence, prev, canonical_event(event))
        await tamper_link(empty_chain, is_postgres, event.sequence, prev_mac=prev, mac=mac)
        prev = mac
    await set_state(empty_chain, last_mac=prev)

    result = await verify_chain(empty_chain, chain)
    assert not result.valid, result
    # Somewhere after the checkpoint that still agrees (sequence 2).
    assert result.first_broken_sequence == 3, result
    assert result.problem is not None
    assert "differs from the checkpoint" in result.problem
    assert result.checkpoints_checked == 2


@pytest.mark.parametrize("wrong", ["same-id-other-secret", "key-not-configured"])
async def test_verifying_with_the_wrong_key_fails_at_the_first_link(
    empty_chain: AsyncSession, chain: ChainSettings, chained: list[AuditEvent], wrong: str
) -> None:
    keys = [ChainKey("k1", b"\x09" * 32)] if wrong == "same-id-other-secret" else [KEY_2]
    wrong_chain = dataclasses.replace(chain, keyring=ChainKeyring(keys))
    result = await verify_chain(empty_chain, wrong_chain, chain_first=False)
    expected = "mac does not match" if wrong == "same-id-other-secret" else "not configured"
    assert_broken_at(result, 1, expected)


async def test_after_key_rotation_old_links_still_verify_and_tampering_is_still_found(
    empty_chain: AsyncSession,
    chain: ChainSettings,
    chained: list[AuditEvent],
    is_postgres: bool,
    tmp_path: Path,
) -> None:
    rotated = dataclasses.replace(chain, keyring=ChainKeyring([KEY_2, KEY_1]))
    await publish_due_checkpoint(empty_chain, chain, force=True)
    await record_many(empty_chain, 2)
    await chain_pending_events(empty_chain, rotated)
    await publish_due_checkpoint(empty_chain, rotated, force=True)
    links = await stored_links(empty_chain)
    assert [link.key_id for link in links] == ["k1"] * 5 + ["k2"] * 2

    result = await verify_chain(empty_chain, rotated)
    assert result.valid, result
    assert (result.events_checked, result.checkpoints_checked) == (7, 2)
    # Dropping the old key too early makes its links unverifiable, and says so.
    only_new = dataclasses.replace(chain, keyring=ChainKeyring([KEY_2]))
    assert_broken_at(await verify_chain(empty_chain, only_new), 1, "'k1', which is not configured")

    await tamper(empty_chain, is_postgres, 2, action="rewritten")
    assert_broken_at(await verify_chain(empty_chain, rotated), 2, "mac does not match")


async def test_deleted_middle_event_is_found_at_its_link(
    empty_chain: AsyncSession, chain: ChainSettings, chained: list[AuditEvent], is_postgres: bool
) -> None:
    await delete_stored(empty_chain, is_postgres, 3)
    result = await verify_chain(empty_chain, chain)
    assert_broken_at(result, 3, "the linked event is missing", event_id=chained[2].id)


async def test_deleted_middle_link_is_found(
    empty_chain: AsyncSession, chain: ChainSettings, chained: list[AuditEvent], is_postgres: bool
) -> None:
    await delete_links(empty_chain, is_postgres, 3)
    assert_broken_at(await verify_chain(empty_chain, chain), 3, "link of sequence 3 is missing")


async def test_renumbered_events_are_found(
    empty_chain: AsyncSession, chain: ChainSettings, chained: list[AuditEvent], is_postgres: bool
) -> None:
    """Cut event 3 out and move 4 and 5 down: each number now holds another event."""
    await delete_stored(empty_chain, is_postgres, 3)
    for sequence in (4, 5):
        await tamper(empty_chain, is_postgres, sequence, sequence=sequence - 1)
    result = await verify_chain(empty_chain, chain)
    assert_broken_at(result, 3, "not the one linked", event_id=chained[3].id)


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("prev_mac", GENESIS_MAC, "prev_mac does not match"),
        ("mac", "e" * 64, "mac does not match"),
        ("key_id", "k9", "not configured"),
        ("event_id", None, "an event exists where the chain recorded a gap"),
    ],
)
async def test_tampered_links_are_found(
    empty_chain: AsyncSession,
    chain: ChainSettings,
    chained: list[AuditEvent],
    is_postgres: bool,
    column: str,
    value: Any,
    problem: str,
) -> None:
    await tamper_link(empty_chain, is_postgres, 3, **{column: value})
    assert_broken_at(await verify_chain(empty_chain, chain), 3, problem)


async def test_an_event_slipped_into_a_gap_is_found(
    empty_chain: AsyncSession, chain: ChainSettings, is_postgres: bool
) -> None:
    """A number the chain recorded as never used (its insert rolled back) cannot be filled in
    later."""
    await record_many(empty_chain, 5)
    forged = (await stored_events(empty_chain))[2]
    await delete_stored(empty_chain, is_postgres, 3)
    run = await chain_pending_events(empty_chain, chain)
    assert (run.linked_events, run.linked_gaps) == (4, 1)
    assert (await verify_chain(empty_chain, chain)).valid

    make_transient(forged)
    async with append_only_bypassed(empty_chain, is_postgres):
        empty_chain.add(forged)
        await empty_chain.flush()
    empty_chain.expunge_all()
    assert_broken_at(
        await verify_chain(empty_chain, chain),
        3,
        "an event exists where the chain recorded a gap",
        event_id=forged.id,
        events_checked=2,
    )


async def test_a_forged_checkpoint_is_reported_and_another_chains_are_ignored(
    empty_chain: AsyncSession, chain: ChainSettings, chained: list[AuditEvent]
) -> None:
    state = await read_state(empty_chain)
    links = await stored_links(empty_chain)
    other = Checkpoint.sign(KEY_1, uuid.uuid4(), 99, "f" * 64, links[0].chained_at)
    await chain.checkpoints.append(other)
    assert (await verify_chain(empty_chain, chain)).valid

    genuine = Checkpoint.sign(KEY_1, state.chain_id, 2, links[1].mac, links[1].chained_at)
    forged = dataclasses.replace(genuine, sequence=1, mac=links[0].mac)
    await chain.checkpoints.append(forged)
    result = await verify_chain(empty_chain, chain)
    assert not result.valid
    assert result.first_broken_sequence == 1
    assert result.problem is not None and "does not carry a valid signature" in result.problem


async def test_a_damaged_checkpoint_file_is_reported(
    empty_chain: AsyncSession, chain: ChainSettings, chained: list[AuditEvent]
) -> None:
    await publish_due_checkpoint(empty_chain, chain, force=True)
    assert isinstance(chain.checkpoints, FileCheckpointStore)
    (path,) = chain.checkpoints.directory.glob("checkpoints-*.jsonl")
    with path.open("a") as file:
        file.write(json.dumps({"sequence": "not a checkpoint"}) + "\n")
    result = await verify_chain(empty_chain, chain)
    assert not result.valid
    assert result.first_broken_sequence is None
    assert result.problem is not None and "line 2 is not a checkpoint" in result.problem


async def test_tampering_found_beyond_the_first_batch(
    empty_chain: AsyncSession,
    chain: ChainSettings,
    chained: list[AuditEvent],
    is_postgres: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(verify_module, "VERIFY_BATCH_SIZE", 2)
    assert (await verify_chain(empty_chain, chain)).valid
    await tamper(empty_chain, is_postgres, 4, reason="slipped in later")
    assert_broken_at(await verify_chain(empty_chain, chain), 4, "mac does not match")


async def test_only_the_first_break_is_reported(
    empty_chain: AsyncSession, chain: ChainSettings, chained: list[AuditEvent], is_postgres: bool
) -> None:
    await tamper(empty_chain, is_postgres, 4, action="late.change")
    await tamper(empty_chain, is_postgres, 2, action="early.change")
    assert_broken_at(await verify_chain(empty_chain, chain), 2, "mac does not match")


async def test_triggers_are_back_after_tampering(
    empty_chain: AsyncSession, chained: list[AuditEvent], is_postgres: bool
) -> None:
    """The bypass used by these tests is scoped: append-only holds again right after it."""
    await tamper(empty_chain, is_postgres, 1, reason="tampered")
    await tamper_link(empty_chain, is_postgres, 1, key_id="k9")
    for statement in (
        "UPDATE audit_events SET reason = 'again'",
        "DELETE FROM audit_events",
        "UPDATE audit_chain_links SET key_id = 'k8'",
        "DELETE FROM audit_chain_links WHERE sequence = 5",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with empty_chain.begin_nested():
                await empty_chain.execute(text(statement))
