"""The visit of a session: `visit_id` at session start and in sync items, completion when the
session completes, and the visits of the sync manifest."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.models.assessment import AssessmentSession
from tests import factories
from tests.conftest import run_sync_items_in_test_session
from tests.schedules.conftest import (
    World,
    audit_events,
    by_key,
    create_schedule,
    days_ago,
    enroll,
    participant_token,
    patch_schedule,
    standard_events,
    visits_of,
)


@pytest.fixture
def app(app: FastAPI, db_session: AsyncSession) -> FastAPI:
    run_sync_items_in_test_session(app, db_session)
    return app


async def _start(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    participant_id: str,
    visit: dict[str, Any] | None,
    **body: Any,
) -> httpx.Response:
    return await client.post(
        "/api/session/start",
        headers=headers,
        json={
            "participant_id": participant_id,
            "battery_id": visit["battery_id"] if visit else body.pop("battery_id"),
            "visit_id": visit["id"] if visit else body.pop("visit_id"),
            **body,
        },
    )


async def _end(
    client: httpx.AsyncClient, headers: dict[str, str], session_id: str, status: str
) -> httpx.Response:
    response = await client.post(
        "/api/session/end", headers=headers, json={"session_id": session_id, "status": status}
    )
    assert response.status_code == 200, response.text
    return response


async def _session_count(db_session: AsyncSession) -> int:
    return int(await db_session.scalar(select(func.count()).select_from(AssessmentSession)) or 0)


async def test_a_session_completes_the_visit_it_was_started_for(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings, world: World
) -> None:
    await create_schedule(client, world)
    participant = await enroll(client, world, "P001")
    baseline = by_key(await visits_of(client, world.coordinator, participant["id"]))["baseline#1"]
    token = await participant_token(db_session, settings, participant["id"])

    abandoned = await _start(client, token, participant["id"], baseline)
    assert abandoned.status_code == 201, abandoned.text
    await _end(client, token, abandoned.json()["session_id"], "abandoned")
    still_open = await client.get(f"/api/schedules/visits/{baseline['id']}", headers=token)
    assert (still_open.json()["status"], still_open.json()["session_id"]) == ("open", None)

    started = await _start(client, token, participant["id"], baseline)
    assert started.status_code == 201, started.text
    session_id = started.json()["session_id"]
    read = await client.get(f"/api/session/{session_id}", headers=world.coordinator)
    assert read.json()["visit_id"] == baseline["id"]
    await _end(client, token, session_id, "completed")

    done = await client.get(f"/api/schedules/visits/{baseline['id']}", headers=world.coordinator)
    assert done.json()["status"] == "completed"
    assert done.json()["session_id"] == session_id
    assert done.json()["completed_at"] is not None
    [completed] = await audit_events(db_session, "visit.completed", study_id=world.study_id)
    assert completed.entity_id == baseline["id"]
    assert completed.actor_type == "participant"
    assert completed.after is not None and completed.after["session_id"] == session_id

    again = await _start(client, world.coordinator, participant["id"], baseline)
    assert again.status_code == 409, again.text
    assert again.json()["error"]["details"]["reason"] == "VISIT_COMPLETED"


async def test_a_visit_id_must_be_one_of_the_participants_visits(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings, world: World
) -> None:
    await create_schedule(client, world)
    first = await enroll(client, world, "P001")
    second = await enroll(client, world, "P002")
    theirs = by_key(await visits_of(client, world.coordinator, second["id"]))["baseline#1"]
    mine = by_key(await visits_of(client, world.coordinator, first["id"]))
    token = await participant_token(db_session, settings, first["id"])
    before = await _session_count(db_session)
    for headers in (token, world.coordinator):
        for visit_id in (theirs["id"], str(uuid.uuid4())):
            refused = await _start(
                client,
                headers,
                first["id"],
                None,
                battery_id=str(world.battery_id),
                visit_id=visit_id,
            )
            assert refused.status_code == 422, refused.text
            error = refused.json()["error"]
            assert error["details"]["errors"] == [
                {"field": "visit_id", "message": "No visit of this participant has this id"}
            ]
    wrong_battery = await _start(
        client,
        token,
        first["id"],
        None,
        battery_id=str(world.second_battery_id),
        visit_id=mine["baseline#1"]["id"],
    )
    assert wrong_battery.status_code == 422
    assert wrong_battery.json()["error"]["details"]["visit_battery_id"] == str(world.battery_id)
    not_yet = await _start(client, token, first["id"], mine["week-4#1"])
    assert not_yet.status_code == 409
    details = not_yet.json()["error"]["details"]
    assert details["reason"] == "VISIT_NOT_OPEN"
    assert details["visit_id"] == mine["week-4#1"]["id"]
    assert await _session_count(db_session) == before


async def test_closed_and_cancelled_visits_refuse_new_sessions(
    client: httpx.AsyncClient, world: World
) -> None:
    schedule = await create_schedule(client, world)
    late = await enroll(client, world, "P-LATE", enrollment_date=days_ago(10))
    visits = by_key(await visits_of(client, world.coordinator, late["id"]))
    closed = await _start(client, world.coordinator, late["id"], visits["baseline#1"])
    assert closed.status_code == 409
    assert closed.json()["error"]["details"]["reason"] == "VISIT_WINDOW_CLOSED"
    # month-6 leaves the schedule: its visit is cancelled.
    await patch_schedule(client, world, schedule["id"], events=standard_events(world)[:2])
    cancelled = await _start(client, world.coordinator, late["id"], visits["month-6#1"])
    assert cancelled.status_code == 409
    assert cancelled.json()["error"]["details"]["reason"] == "VISIT_CANCELLED"


def _session_item(
    world: World, visit: dict[str, Any], *, started_days_ago: float, **overrides: Any
) -> dict[str, Any]:
    started = utcnow() - timedelta(days=started_days_ago)
    return {
        "type": "session",
        "id": f"item-{uuid.uuid4().hex[:12]}",
        "session_id": str(uuid.uuid4()),
        "battery_id": visit["battery_id"],
        "battery_version": 1,
        "visit_id": visit["id"],
        "started_at": started.isoformat(),
        "ended_at": (started + timedelta(minutes=10)).isoformat(),
        "status": "completed",
        "client_time": utcnow().isoformat(),
        "trials": factories.simple_rt_trials(),
        **overrides,
    }


async def test_sync_items_carry_the_visit_and_complete_it(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings, world: World
) -> None:
    """An offline session run during the window completes the visit even when it is uploaded
    after the window closed; a replay of the batch is a duplicate."""
    await create_schedule(client, world)
    participant = await enroll(client, world, "P-OFFLINE", enrollment_date=days_ago(10))
    other = await enroll(client, world, "P-OTHER")
    visits = by_key(await visits_of(client, world.coordinator, participant["id"]))
    assert visits["baseline#1"]["status"] == "missed"  # days 0-7, ten days ago
    token = await participant_token(db_session, settings, participant["id"])
    ran_offline = _session_item(world, visits["baseline#1"], started_days_ago=5)
    others = by_key(await visits_of(client, world.coordinator, other["id"]))["baseline#1"]
    foreign = _session_item(world, others, started_days_ago=0.01)
    too_late = _session_item(
        world, visits["baseline#1"], started_days_ago=1, session_id=str(uuid.uuid4())
    )

    batch = {"items": [ran_offline, foreign, too_late]}
    response = await client.post("/api/sync", headers=token, json=batch)
    assert response.status_code == 200, response.text
    results = response.json()["items"]
    assert [r["status"] for r in results] == ["accepted", "rejected", "conflict"]
    assert results[1]["error"]["details"]["errors"][0]["field"] == "visit_id"
    assert results[2]["error"]["details"]["reason"] == "VISIT_COMPLETED"

    done = await client.get(
        f"/api/schedules/visits/{visits['baseline#1']['id']}", headers=world.coordinator
    )
    assert done.json()["status"] == "completed"
    assert done.json()["session_id"] == ran_offline["session_id"]

    replay = await client.post("/api/sync", headers=token, json={"items": [ran_offline]})
    assert [r["status"] for r in replay.json()["items"]] == ["duplicate"]
    changed_visit = {**ran_offline, "visit_id": visits["week-4#1"]["id"]}
    conflict = await client.post("/api/sync", headers=token, json={"items": [changed_visit]})
    assert [r["status"] for r in conflict.json()["items"]] == ["conflict"]


async def test_a_window_closed_before_the_offline_start_is_refused(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings, world: World
) -> None:
    await create_schedule(client, world)
    participant = await enroll(client, world, "P-LATE", enrollment_date=days_ago(10))
    baseline = by_key(await visits_of(client, world.coordinator, participant["id"]))["baseline#1"]
    token = await participant_token(db_session, settings, participant["id"])
    item = _session_item(world, baseline, started_days_ago=1)
    response = await client.post("/api/sync", headers=token, json={"items": [item]})
    [result] = response.json()["items"]
    assert result["status"] == "conflict"
    assert result["error"]["details"]["reason"] == "VISIT_WINDOW_CLOSED"
    assert await _session_count(db_session) == 0


async def test_the_manifest_lists_open_and_upcoming_visits(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings, world: World
) -> None:
    await create_schedule(client, world)
    participant = await enroll(client, world, "P001")
    token = await participant_token(db_session, settings, participant["id"])
    first = await client.get("/api/sync/manifest", headers=token)
    assert first.status_code == 200, first.text
    listed = first.json()["visits"]
    assert [(v["event_key"], v["status"]) for v in listed] == [
        ("baseline", "open"),
        ("week-4", "scheduled"),
        ("month-6", "scheduled"),
    ]
    visits = by_key(await visits_of(client, world.coordinator, participant["id"]))
    baseline = visits["baseline#1"]
    assert listed[0] == {
        "id": baseline["id"],
        "event_key": "baseline",
        "occurrence": 1,
        "label": "Baseline",
        "battery_id": str(world.battery_id),
        "status": "open",
        "timezone": "Europe/Paris",
        "due_date": baseline["due_date"],
        "window_start_date": baseline["window_start_date"],
        "window_end_date": baseline["window_end_date"],
        "due_at": baseline["due_at"],
        "window_start": baseline["window_start"],
        "window_end": baseline["window_end"],
    }
    staff_view = await client.get(
        "/api/sync/manifest",
        headers=world.coordinator,
        params={"participant_id": participant["id"]},
    )
    assert staff_view.json()["visits"] == listed

    started = await _start(client, token, participant["id"], baseline)
    await _end(client, token, started.json()["session_id"], "completed")
    after = await client.get(
        "/api/sync/manifest", headers={**token, "If-None-Match": first.headers["ETag"]}
    )
    assert after.status_code == 200  # the content changed, so did the ETag
    assert [v["event_key"] for v in after.json()["visits"]] == ["week-4", "month-6"]
