"""POST /api/sync: per-item transactions, replays, conflicts, clock offset and limits."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.models.assessment import AssessmentSession
from app.schemas.sync import MAX_SYNC_ITEMS, MAX_TRIALS_PER_TASK
from app.services import sync as sync_service
from tests.assessments.conftest import World
from tests.factories import simple_rt_trials
from tests.sync.conftest import (
    consent_item,
    counts,
    session_item,
    statuses,
)


async def test_a_week_offline_then_the_same_batch_again(
    client: httpx.AsyncClient,
    world: World,
    consent_form_id: uuid.UUID,
    db_session: AsyncSession,
) -> None:
    """The consent signature comes first, so the sessions behind it pass the consent gate."""
    batch = {
        "items": [
            consent_item(consent_form_id),
            *(session_item(world, day=day) for day in range(5)),
        ]
    }
    before = await counts(db_session)
    first = await client.post("/api/sync", headers=world.participant, json=batch)
    assert statuses(first) == ["accepted"] * 6
    body = first.json()
    assert "server_time" in body
    assert [item["index"] for item in body["items"]] == list(range(6))
    assert [item["id"] for item in body["items"]] == [item["id"] for item in batch["items"]]
    for item, sent in zip(body["items"][1:], batch["items"][1:], strict=True):
        assert item["error"] is None
        assert item["result"]["session_id"] == sent["session_id"]
        assert item["result"]["status"] == "completed"
        assert item["result"]["receipt"]["tasks_stored"] == ["simple-rt"]
    assert body["items"][0]["result"]["form_version"] == 1
    # The signature keeps the device's time beside the server's time of receipt.
    assert body["items"][0]["result"]["device_signed_at"] is not None
    assert (
        body["items"][0]["result"]["device_signed_at"][:16] == batch["items"][0]["signed_at"][:16]
    )
    stored = await counts(db_session)
    assert stored["sessions"] == before["sessions"] + 5
    assert stored["task_results"] == before["task_results"] + 5
    assert stored["trials"] == before["trials"] + 50
    assert stored["consent_records"] == before["consent_records"] + 1

    # Sessions started offline keep their client ids, start and end times.
    sent = batch["items"][1]
    record = await db_session.get(AssessmentSession, uuid.UUID(sent["session_id"]))
    assert record is not None
    await db_session.refresh(record)
    assert record.status == "completed"
    assert record.started_at.isoformat() == sent["started_at"]
    assert record.ended_at is not None and record.ended_at.isoformat() == sent["ended_at"]

    again = await client.post("/api/sync", headers=world.participant, json=batch)
    assert statuses(again) == ["duplicate"] * 6
    assert [item["result"] for item in again.json()["items"]] == [
        item["result"] for item in body["items"]
    ]
    assert await counts(db_session) == stored


async def test_a_batch_mixing_new_replayed_conflicting_and_invalid_items(
    client: httpx.AsyncClient, world: World, db_session: AsyncSession
) -> None:
    synced = session_item(world, day=1)
    first = await client.post("/api/sync", headers=world.participant, json={"items": [synced]})
    assert statuses(first) == ["accepted"]

    new = session_item(world, day=2)
    conflicting = {**synced, "id": "edited", "trials": simple_rt_trials(base=500.0)}
    missing_battery = {k: v for k, v in session_item(world).items() if k != "battery_id"}
    unknown_task = session_item(
        world, trials=[{"task": "no-such-task", "trial_index": 0, "rt": 300.0}]
    )
    someone_else = session_item(world, participant_id=str(world.other_participant_id))
    wrong_version = {**synced, "id": "other-version", "battery_version": 2}
    # Beyond any INTEGER column: refused by the item's checks, not by the database.
    huge_version = {**session_item(world, day=3), "id": "huge-version", "battery_version": 2**63}
    not_an_object = 42
    unknown_type = {"type": "reminder", "id": "r-1"}
    batch: dict[str, Any] = {
        "items": [
            new,
            synced,
            conflicting,
            missing_battery,
            unknown_task,
            someone_else,
            wrong_version,
            huge_version,
            not_an_object,
            unknown_type,
        ]
    }
    before = await counts(db_session)
    response = await client.post("/api/sync", headers=world.participant, json=batch)
    assert statuses(response) == [
        "accepted",
        "duplicate",
        "conflict",
        "rejected",
        "rejected",
        "rejected",
        "conflict",
        "rejected",
        "rejected",
        "rejected",
    ]
    items = response.json()["items"]
    assert items[2]["error"]["code"] == "SUBMISSION_CONFLICT"
    assert items[2]["error"]["details"]["tasks"] == ["simple-rt"]
    assert items[3]["error"]["code"] == "VALIDATION_ERROR"
    assert items[3]["error"]["details"]["errors"][0]["field"] == "session.battery_id"
    assert items[3]["id"] == missing_battery["id"]
    assert items[4]["error"]["code"] == "VALIDATION_ERROR"
    assert items[5]["error"]["code"] == "VALIDATION_ERROR"
    assert items[5]["error"]["details"]["errors"][0]["field"] == "participant_id"
    assert items[6]["error"]["code"] == "CONFLICT"
    assert items[7]["id"] == "huge-version"
    assert items[7]["error"]["code"] == "VALIDATION_ERROR"
    assert items[7]["error"]["details"]["errors"][0]["field"] == "session.battery_version"
    assert items[8]["id"] is None and items[8]["error"]["code"] == "VALIDATION_ERROR"
    assert items[9]["id"] == "r-1"

    after = await counts(db_session)
    # Only the new session is stored: its start, task result and trials. The conflict leaves an
    # audit event (kept on purpose), nothing else.
    assert after["sessions"] == before["sessions"] + 1
    assert after["task_results"] == before["task_results"] + 1
    assert after["trials"] == before["trials"] + 10
    unknown = await db_session.get(AssessmentSession, uuid.UUID(unknown_task["session_id"]))
    assert unknown is None, "a rejected item leaves no half-started session"
    stored = await client.get(f"/api/session/{synced['session_id']}", headers=world.participant)
    assert stored.json()["tasks"][0]["n_trials"] == 10


async def test_clock_offset_is_stored_and_raises_clock_skew(
    client: httpx.AsyncClient, world: World, db_session: AsyncSession
) -> None:
    built_at = utcnow()
    skewed = session_item(world, client_time=(utcnow() + timedelta(minutes=10)).isoformat())
    on_time = session_item(world, day=1)
    from_batch = session_item(world, day=2)
    del from_batch["client_time"]
    response = await client.post(
        "/api/sync",
        headers=world.participant,
        json={
            "items": [skewed, on_time, from_batch],
            "client_time": (utcnow() - timedelta(minutes=7)).isoformat(),
        },
    )
    assert statuses(response) == ["accepted"] * 3
    receipts = [item["result"]["receipt"] for item in response.json()["items"]]
    # Offsets are measured against the server's clock on arrival: on a loaded machine the batch
    # may arrive seconds after its times were written.
    tolerance = 5 + (utcnow() - built_at).total_seconds()

    offsets = {}
    for item in (skewed, on_time, from_batch):
        session_id = uuid.UUID(item["session_id"])
        offsets[item["id"]] = await db_session.scalar(
            select(AssessmentSession.clock_offset_seconds).where(AssessmentSession.id == session_id)
        )
    assert offsets[skewed["id"]] == pytest.approx(600, abs=tolerance)
    assert offsets[on_time["id"]] == pytest.approx(0, abs=tolerance)
    assert offsets[from_batch["id"]] == pytest.approx(-420, abs=tolerance)

    def skew_flags(receipt: dict[str, Any]) -> list[dict[str, Any]]:
        return [flag for flag in receipt["flags"] if flag["code"] == "CLOCK_SKEW"]

    [flag] = skew_flags(receipts[0])
    assert flag["task"] == "simple-rt"
    assert flag["evidence"]["clock_offset_seconds"] == pytest.approx(600, abs=tolerance)
    assert skew_flags(receipts[1]) == []
    assert len(skew_flags(receipts[2])) == 1
    read = await client.get(f"/api/session/{skewed['session_id']}", headers=world.participant)
    assert read.json()["clock_offset_seconds"] == pytest.approx(600, abs=tolerance)


async def test_limits(client: httpx.AsyncClient, world: World, db_session: AsyncSession) -> None:
    before = await counts(db_session)
    too_many = {"items": [session_item(world, trials=[]) for _ in range(MAX_SYNC_ITEMS + 1)]}
    response = await client.post("/api/sync", headers=world.participant, json=too_many)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert await counts(db_session) == before

    heavy = session_item(
        world,
        trials=[
            {"task": "simple-rt", "trial_index": i, "rt": 300.0}
            for i in range(MAX_TRIALS_PER_TASK + 1)
        ],
    )
    light = session_item(world, day=1)
    response = await client.post(
        "/api/sync", headers=world.participant, json={"items": [heavy, light]}
    )
    assert statuses(response) == ["rejected", "accepted"]
    error = response.json()["items"][0]["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"]["errors"][0]["field"] == "session.trials"

    oversized = b'{"items": [' + b" " * (10 * 1024 * 1024) + b"]}"
    response = await client.post(
        "/api/sync",
        headers={**world.participant, "Content-Type": "application/json"},
        content=oversized,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_items_use_the_submit_trial_model(
    client: httpx.AsyncClient, world: World, db_session: AsyncSession
) -> None:
    """Numbers sent as strings are refused as by /api/submit; unusable data is flagged."""
    string_rt = session_item(world, trials=[{"task": "simple-rt", "trial_index": 0, "rt": "350"}])
    string_span = session_item(
        world,
        day=1,
        trials=[{"task": "digit-span", "trial_index": 0, "span_length": "4", "correct": True}],
    )
    no_direction = session_item(
        world,
        day=2,
        task_summaries={},
        trials=[{"task": "digit-span", "trial_index": 0, "span_length": 4, "correct": True}],
    )
    before = await counts(db_session)
    response = await client.post(
        "/api/sync",
        headers=world.participant,
        json={"items": [string_rt, string_span, no_direction]},
    )
    assert statuses(response) == ["rejected", "rejected", "accepted"]
    items = response.json()["items"]
    fields = [
        [error["field"] for error in item["error"]["details"]["errors"]] for item in items[:2]
    ]
    assert fields == [["session.trials.0.rt"], ["session.trials.0.span_length"]]
    after = await counts(db_session)
    assert after["sessions"] == before["sessions"] + 1
    assert after["trials"] == before["trials"] + 1
    flags = items[2]["result"]["receipt"]["flags"]
    assert {
        "code": "MISSING_FIELD",
        "task": "digit-span",
        "evidence": {"field": "direction", "count": 1, "trials": 1},
    } in flags


async def test_an_unexpected_error_in_one_item_spares_the_others(
    client: httpx.AsyncClient,
    world: World,
    consent_form_id: uuid.UUID,
    db_session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(sync_service, "_apply_consent", broken)
    response = await client.post(
        "/api/sync",
        headers=world.participant,
        json={"items": [consent_item(consent_form_id), session_item(world)]},
    )
    # The consent item failed; the session behind it then meets the consent gate.
    assert statuses(response) == ["rejected", "rejected"]
    items = response.json()["items"]
    assert items[0]["error"] == {
        "code": "INTERNAL_ERROR",
        "message": "An unexpected error occurred",
        "details": {},
    }
    assert "boom" not in response.text
    assert items[1]["error"]["code"] == "CONSENT_REQUIRED"

    monkeypatch.undo()
    retried = await client.post(
        "/api/sync",
        headers=world.participant,
        json={"items": [consent_item(consent_form_id), session_item(world)]},
    )
    assert statuses(retried) == ["accepted", "accepted"]


async def test_a_replayed_signature_never_consents_again_after_withdrawal(
    client: httpx.AsyncClient,
    world: World,
    consent_form_id: uuid.UUID,
    db_session: AsyncSession,
) -> None:
    signature = consent_item(consent_form_id)
    assert statuses(
        await client.post("/api/sync", headers=world.participant, json={"items": [signature]})
    ) == ["accepted"]
    withdrawn = await client.post(
        "/api/consent/withdraw", headers=world.participant, json={"reason": "Too busy"}
    )
    assert withdrawn.status_code == 200, withdrawn.text
    before = await counts(db_session)
    replay = await client.post("/api/sync", headers=world.participant, json={"items": [signature]})
    assert statuses(replay) == ["duplicate"]
    assert await counts(db_session) == before

    # A signature the device records after the withdrawal is new consent.
    renewed = consent_item(consent_form_id, signed_at=utcnow())
    response = await client.post("/api/sync", headers=world.participant, json={"items": [renewed]})
    assert statuses(response) == ["accepted"]


async def test_a_different_signature_for_a_signed_form_is_a_conflict(
    client: httpx.AsyncClient, world: World, consent_form_id: uuid.UUID
) -> None:
    first = consent_item(consent_form_id)
    other = {**consent_item(consent_form_id), "signer_name": "Someone Else"}
    response = await client.post(
        "/api/sync", headers=world.participant, json={"items": [first, other]}
    )
    assert statuses(response) == ["accepted", "conflict"]
    assert response.json()["items"][1]["error"]["code"] == "CONFLICT"


async def test_staff_sync_for_a_participant(
    client: httpx.AsyncClient, world: World, db_session: AsyncSession
) -> None:
    anonymous = session_item(world)
    named = session_item(world, day=1, participant_id="P001")
    response = await client.post(
        "/api/sync", headers=world.coordinator, json={"items": [anonymous, named]}
    )
    assert statuses(response) == ["rejected", "accepted"]
    assert response.json()["items"][0]["error"]["details"]["errors"][0]["field"] == (
        "participant_id"
    )
    record = await db_session.get(AssessmentSession, uuid.UUID(named["session_id"]))
    assert record is not None and record.participant_id == world.participant_id


async def test_staff_sync_a_signature_naming_the_participant_by_code(
    client: httpx.AsyncClient, world: World, consent_form_id: uuid.UUID
) -> None:
    """A consent item reads the participant's code within the form's study; a code of nobody
    there is rejected naming the field, as the online route answers it."""
    by_code = {**consent_item(consent_form_id), "participant_id": "P002"}
    unknown = {**consent_item(consent_form_id), "participant_id": "P404"}
    response = await client.post(
        "/api/sync", headers=world.coordinator, json={"items": [by_code, unknown]}
    )
    assert statuses(response) == ["accepted", "rejected"]
    error = response.json()["items"][1]["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"]["errors"][0]["field"] == "participant_id"
    status = await client.get("/api/consent/status", headers=world.other_participant)
    assert status.json()["record_id"] == response.json()["items"][0]["result"]["record_id"]


async def test_a_session_item_naming_no_visit_of_the_participant_is_rejected(
    client: httpx.AsyncClient, world: World, db_session: AsyncSession
) -> None:
    """Items with real visits: tests/schedules/test_sessions.py."""
    with_visit = session_item(world, visit_id=str(uuid.uuid4()))
    before = await counts(db_session)
    response = await client.post(
        "/api/sync", headers=world.participant, json={"items": [with_visit, session_item(world)]}
    )
    assert statuses(response) == ["rejected", "accepted"]
    error = response.json()["items"][0]["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"]["errors"][0]["field"] == "visit_id"
    assert (await counts(db_session))["sessions"] == before["sessions"] + 1


async def test_a_session_first_started_online_is_completed_by_sync(
    client: httpx.AsyncClient, world: World
) -> None:
    session_id = uuid.uuid4()
    started = await client.post(
        "/api/session/start",
        headers=world.participant,
        json={
            "participant_id": str(world.participant_id),
            "battery_id": str(world.battery_id),
            "session_id": str(session_id),
        },
    )
    assert started.status_code == 201, started.text
    item = session_item(world, session_id=session_id)
    response = await client.post("/api/sync", headers=world.participant, json={"items": [item]})
    assert statuses(response) == ["accepted"]
    ended_differently = {**item, "id": "abandon", "status": "abandoned"}
    response = await client.post(
        "/api/sync", headers=world.participant, json={"items": [ended_differently]}
    )
    assert statuses(response) == ["conflict"]


async def test_sync_needs_authentication(client: httpx.AsyncClient, world: World) -> None:
    response = await client.post("/api/sync", json={"items": []})
    assert response.status_code == 401


async def test_a_database_outage_fails_the_batch_for_a_retry(
    client: httpx.AsyncClient,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def unavailable(*_: object, **__: object) -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(sync_service, "_apply_session", unavailable)
    response = await client.post(
        "/api/sync", headers=world.participant, json={"items": [session_item(world)]}
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"


async def test_synced_signatures_are_png_only_like_online_ones(
    client: httpx.AsyncClient,
    world: World,
    consent_form_id: uuid.UUID,
    db_session: AsyncSession,
) -> None:
    svg = '<svg><a><set attributeName="href" to="javascript:alert(1)"/></a></svg>'
    refused = [
        {**consent_item(consent_form_id), "signature_image": image}
        for image in (
            "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode(),
            "data:image/png;base64," + base64.b64encode(svg.encode()).decode(),
        )
    ]
    before = await counts(db_session)
    response = await client.post(
        "/api/sync",
        headers=world.participant,
        json={"items": [*refused, consent_item(consent_form_id)]},
    )
    assert statuses(response) == ["rejected", "rejected", "accepted"]
    for item in response.json()["items"][:2]:
        assert item["error"]["code"] == "VALIDATION_ERROR"
        assert item["error"]["details"]["errors"][0]["field"] == "signature_image"
    assert (await counts(db_session))["consent_records"] == before["consent_records"] + 1


class _UniqueViolationError(Exception):
    """What the PostgreSQL driver raises for a duplicate key."""

    sqlstate = "23505"


def _colliding(times: int, apply: Callable[..., Awaitable[object]]) -> Callable[..., object]:
    """`apply`, refused with a unique violation the first `times` calls."""
    calls = 0

    async def collide_then_apply(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls <= times:
            raise IntegrityError("INSERT", {}, _UniqueViolationError("duplicate key"))
        return await apply(*args, **kwargs)

    return collide_then_apply


async def test_an_item_that_collided_with_a_concurrent_writer_runs_again(
    client: httpx.AsyncClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        sync_service,
        "_apply_session",
        _colliding(sync_service.ITEM_ATTEMPTS - 1, sync_service._apply_session),
    )
    response = await client.post(
        "/api/sync", headers=world.participant, json={"items": [session_item(world)]}
    )
    assert statuses(response) == ["accepted"]


async def test_an_item_that_keeps_colliding_is_a_conflict_to_send_again(
    client: httpx.AsyncClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        sync_service,
        "_apply_session",
        _colliding(sync_service.ITEM_ATTEMPTS, sync_service._apply_session),
    )
    item = session_item(world)
    response = await client.post("/api/sync", headers=world.participant, json={"items": [item]})
    assert statuses(response) == ["conflict"]
    assert response.json()["items"][0]["error"]["details"] == {"reason": "CONCURRENT_WRITE"}

    monkeypatch.undo()
    again = await client.post("/api/sync", headers=world.participant, json={"items": [item]})
    assert statuses(again) == ["accepted"]
