"""Rescheduling one visit (with a reason, audited) and withdrawal cancelling visits."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from tests.schedules.conftest import (
    PARIS,
    World,
    audit_events,
    by_key,
    create_schedule,
    days_ago,
    enroll,
    event,
    standard_events,
    today_in,
    visits_of,
)


async def _reschedule(
    client: httpx.AsyncClient, headers: dict[str, str], visit_id: str, **body: Any
) -> httpx.Response:
    return await client.post(
        f"/api/schedules/visits/{visit_id}/reschedule", headers=headers, json=body
    )


async def test_reschedule_a_visit_with_a_reason(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    await create_schedule(client, world)
    participant = await enroll(client, world, "P001")
    week = by_key(await visits_of(client, world.coordinator, participant["id"]))["week-4#1"]
    new_due = today_in(PARIS) + timedelta(days=33)
    response = await _reschedule(
        client, world.coordinator, week["id"], due_date=new_due.isoformat(), reason="On holiday"
    )
    assert response.status_code == 200, response.text
    moved = response.json()
    assert moved["id"] == week["id"]
    assert moved["due_date"] == new_due.isoformat()
    # The window keeps its width: three days either side.
    assert moved["window_start_date"] == (new_due - timedelta(days=3)).isoformat()
    assert moved["window_end_date"] == (new_due + timedelta(days=3)).isoformat()
    assert moved["status"] == "scheduled"
    assert moved["reschedule_reason"] == "On holiday"
    assert moved["rescheduled_at"] is not None

    [audited] = await audit_events(db_session, "visit.rescheduled", study_id=world.study_id)
    assert audited.category == "visit"
    assert audited.reason == "On holiday"
    assert audited.entity_id == week["id"]
    assert audited.before is not None and audited.after is not None
    assert audited.before["due_date"] == week["due_date"]
    assert audited.after["due_date"] == new_due.isoformat()

    # The same dates again: nothing changes, nothing is recorded.
    same = await _reschedule(
        client, world.coordinator, week["id"], due_date=new_due.isoformat(), reason="Again"
    )
    assert same.status_code == 200
    assert len(await audit_events(db_session, "visit.rescheduled")) == 1

    narrower = await _reschedule(
        client,
        world.researcher,
        week["id"],
        due_date=new_due.isoformat(),
        window_before_days=0,
        window_after_days=5,
        reason="Clinic closed before",
    )
    assert narrower.status_code == 200, narrower.text
    assert (narrower.json()["window_start_date"], narrower.json()["window_end_date"]) == (
        new_due.isoformat(),
        (new_due + timedelta(days=5)).isoformat(),
    )


async def test_a_missed_visit_can_get_a_new_window(client: httpx.AsyncClient, world: World) -> None:
    await create_schedule(client, world)
    participant = await enroll(client, world, "P-LATE", enrollment_date=days_ago(12))
    baseline = by_key(await visits_of(client, world.coordinator, participant["id"]))["baseline#1"]
    assert baseline["status"] == "missed"
    over = await _reschedule(
        client, world.coordinator, baseline["id"], due_date=days_ago(9), reason="Too late"
    )
    assert over.status_code == 422
    assert over.json()["error"]["details"]["errors"][0]["field"] == "due_date"
    reopened = await _reschedule(
        client,
        world.coordinator,
        baseline["id"],
        due_date=today_in(PARIS).isoformat(),
        window_before_days=0,
        reason="Came back from hospital",
    )
    assert reopened.status_code == 200, reopened.text
    assert reopened.json()["status"] == "open"
    overdue = await client.get(
        "/api/schedules/visits/overdue",
        headers=world.coordinator,
        params={"study_id": str(world.study_id)},
    )
    assert baseline["id"] not in [v["id"] for v in overdue.json()["data"]]


async def test_what_cannot_be_rescheduled(client: httpx.AsyncClient, world: World) -> None:
    await create_schedule(client, world)
    participant = await enroll(client, world, "P001")
    visits = by_key(await visits_of(client, world.coordinator, participant["id"]))
    baseline, week = visits["baseline#1"], visits["week-4#1"]
    later = (today_in(PARIS) + timedelta(days=3)).isoformat()

    started = await client.post(
        "/api/session/start",
        headers=world.coordinator,
        json={
            "participant_id": participant["id"],
            "battery_id": baseline["battery_id"],
            "visit_id": baseline["id"],
        },
    )
    assert started.status_code == 201, started.text
    running = await _reschedule(
        client, world.coordinator, baseline["id"], due_date=later, reason="x"
    )
    assert running.status_code == 409
    assert running.json()["error"]["details"]["reason"] == "VISIT_IN_PROGRESS"
    await client.post(
        "/api/session/end",
        headers=world.coordinator,
        json={"session_id": started.json()["session_id"], "status": "completed"},
    )
    completed = await _reschedule(
        client, world.coordinator, baseline["id"], due_date=later, reason="x"
    )
    assert completed.status_code == 409
    assert completed.json()["error"]["details"]["reason"] == "VISIT_COMPLETED"

    no_reason = await _reschedule(client, world.coordinator, week["id"], due_date=later)
    assert no_reason.status_code == 422
    for headers, expected in (
        (world.read_only, 403),
        (world.ny_coordinator, 404),  # a Paris participant
        (world.outsider, 404),
    ):
        refused = await _reschedule(client, headers, week["id"], due_date=later, reason="x")
        assert refused.status_code == expected, refused.text


async def test_withdrawal_cancels_the_visits_still_to_come(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    await create_schedule(
        client,
        world,
        [
            *standard_events(world),
            event("week-4-extra", 29, world.second_battery_id, before=3, after=3),
        ],
    )
    participant = await enroll(client, world, "P-OUT", enrollment_date=days_ago(30))
    visits = by_key(await visits_of(client, world.coordinator, participant["id"]))
    assert {key: v["status"] for key, v in visits.items()} == {
        "baseline#1": "missed",
        "week-4#1": "open",
        "week-4-extra#1": "open",
        "month-6#1": "scheduled",
    }
    extra = visits["week-4-extra#1"]
    started = await client.post(
        "/api/session/start",
        headers=world.coordinator,
        json={
            "participant_id": participant["id"],
            "battery_id": extra["battery_id"],
            "visit_id": extra["id"],
        },
    )
    session_id = started.json()["session_id"]
    await client.post(
        "/api/session/end",
        headers=world.coordinator,
        json={"session_id": session_id, "status": "completed"},
    )

    withdrawn = await client.post(
        f"/api/participants/{participant['id']}/withdraw",
        headers=world.coordinator,
        json={"reason": "no longer wishes to take part", "scope": "stop_collection"},
    )
    assert withdrawn.status_code == 200, withdrawn.text
    after = by_key(await visits_of(client, world.coordinator, participant["id"]))
    assert {key: v["status"] for key, v in after.items()} == {
        "baseline#1": "missed",
        "week-4#1": "cancelled",
        "week-4-extra#1": "completed",
        "month-6#1": "cancelled",
    }
    assert after["week-4#1"]["cancellation_reason"] == "participant_withdrawn"
    assert after["week-4-extra#1"]["session_id"] == session_id
    [cancelled] = await audit_events(db_session, "visits.cancelled", study_id=world.study_id)
    assert cancelled.after is not None
    assert sorted(v["event_key"] for v in cancelled.after["visits"]) == ["month-6", "week-4"]
    upcoming = await client.get(
        "/api/schedules/visits/upcoming",
        headers=world.coordinator,
        params={"study_id": str(world.study_id), "days": "366"},
    )
    assert upcoming.json()["data"] == []

    # Erasing the data afterwards removes the session; the visit stays completed without it.
    erased = await client.post(
        f"/api/participants/{participant['id']}/withdraw",
        headers=world.coordinator,
        json={"reason": "asked for erasure", "scope": "delete_data"},
    )
    assert erased.status_code == 200, erased.text
    extra_after = await client.get(
        f"/api/schedules/visits/{extra['id']}", headers=world.coordinator
    )
    assert (extra_after.json()["status"], extra_after.json()["session_id"]) == ("completed", None)
