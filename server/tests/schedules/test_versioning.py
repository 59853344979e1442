"""Schedule versions, and what a new version does to the visits: it regenerates those that have
not started and never touches completed, open, missed or in-progress ones."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from tests.schedules.conftest import (
    World,
    audit_events,
    by_key,
    create_schedule,
    days_ago,
    enroll,
    event,
    patch_schedule,
    standard_events,
    today_in,
    visits_of,
)


async def _complete(
    client: httpx.AsyncClient, world: World, participant_id: str, visit: dict[str, Any]
) -> str:
    started = await client.post(
        "/api/session/start",
        headers=world.coordinator,
        json={
            "participant_id": participant_id,
            "battery_id": visit["battery_id"],
            "visit_id": visit["id"],
        },
    )
    assert started.status_code == 201, started.text
    session_id: str = started.json()["session_id"]
    ended = await client.post(
        "/api/session/end",
        headers=world.coordinator,
        json={"session_id": session_id, "status": "completed"},
    )
    assert ended.status_code == 200, ended.text
    return session_id


def _version_2_events(world: World) -> list[dict[str, Any]]:
    return [
        event("baseline", 0, world.battery_id, after=10),  # wider: only visits not started
        event("day-3", 3, world.battery_id, after=1),  # new
        event("week-4", 35, world.battery_id, before=3, after=3, label="Week 5"),  # moved
        event("month-3", 91, world.second_battery_id, before=7, after=7),  # new
        # month-6 removed
    ]


async def test_a_new_version_regenerates_only_the_visits_that_have_not_started(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    schedule = await create_schedule(client, world)
    new = await enroll(client, world, "P-NEW")  # baseline open today
    later = await enroll(client, world, "P-LATER", enrollment_date=days_ago(30))
    done = await enroll(client, world, "P-DONE")
    done_baseline = by_key(await visits_of(client, world.coordinator, done["id"]))["baseline#1"]
    session_id = await _complete(client, world, done["id"], done_baseline)
    before = {
        code: by_key(await visits_of(client, world.coordinator, p["id"]))
        for code, p in (("new", new), ("later", later), ("done", done))
    }
    assert before["later"]["baseline#1"]["status"] == "missed"
    assert before["later"]["week-4#1"]["status"] == "open"
    assert before["done"]["baseline#1"]["status"] == "completed"
    assert before["done"]["baseline#1"]["session_id"] == session_id

    patched = await patch_schedule(
        client, world, schedule["id"], events=_version_2_events(world), reason="protocol v2"
    )
    assert patched["version"] == 2
    # new: day-3 and month-3 created, week-4 moved, month-6 cancelled; done: the same;
    # later: month-3 created (day-3 is over for them), month-6 cancelled, the rest has started.
    assert patched["visits"] == {"participants": 3, "created": 5, "updated": 2, "cancelled": 3}

    after = {
        code: by_key(await visits_of(client, world.coordinator, p["id"]))
        for code, p in (("new", new), ("later", later), ("done", done))
    }
    today = today_in("Europe/Paris")
    for code in ("new", "done"):
        visits = after[code]
        assert sorted(visits) == ["baseline#1", "day-3#1", "month-3#1", "month-6#1", "week-4#1"]
        # Started (open, completed): exactly as before, version 1, old window.
        assert visits["baseline#1"] == before[code]["baseline#1"]
        # Not started: the same visit, moved to version 2.
        week = visits["week-4#1"]
        assert week["id"] == before[code]["week-4#1"]["id"]
        assert (week["schedule_version"], week["label"]) == (2, "Week 5")
        assert week["due_date"] == (today + timedelta(days=35)).isoformat()
        assert week["status"] == "scheduled"
        cancelled = visits["month-6#1"]
        assert cancelled["id"] == before[code]["month-6#1"]["id"]
        assert (cancelled["status"], cancelled["cancellation_reason"]) == (
            "cancelled",
            "schedule_changed",
        )
        assert visits["day-3#1"]["schedule_version"] == 2
        assert visits["month-3#1"]["battery_id"] == str(world.second_battery_id)
    assert after["done"]["baseline#1"]["status"] == "completed"

    late = after["later"]
    assert sorted(late) == ["baseline#1", "month-3#1", "month-6#1", "week-4#1"]
    assert late["baseline#1"] == before["later"]["baseline#1"]  # missed
    assert late["week-4#1"] == before["later"]["week-4#1"]  # open, still due on day 28
    assert late["month-6#1"]["status"] == "cancelled"

    [update] = await audit_events(db_session, "schedule.update", study_id=world.study_id)
    assert update.reason == "protocol v2"
    assert update.before is not None and update.after is not None
    assert (update.before["version"], update.after["version"]) == (1, 2)
    regenerated = await audit_events(db_session, "visits.regenerated", study_id=world.study_id)
    assert [e.after for e in regenerated] == [
        {"schedule_version": 2, "participants": 3, "created": 5, "updated": 2, "cancelled": 3}
    ]

    # Putting month-6 back revives the very visits it cancelled (ids an offline device may hold).
    events_v3 = [*_version_2_events(world), standard_events(world)[2]]
    version_3 = await patch_schedule(client, world, schedule["id"], events=events_v3)
    assert version_3["version"] == 3
    assert version_3["visits"]["cancelled"] == 0
    revived = by_key(await visits_of(client, world.coordinator, new["id"]))["month-6#1"]
    assert revived["id"] == before["new"]["month-6#1"]["id"]
    assert (revived["status"], revived["cancellation_reason"], revived["cancelled_at"]) == (
        "scheduled",
        None,
        None,
    )
    assert revived["due_date"] == before["new"]["month-6#1"]["due_date"]


async def test_a_patch_that_changes_nothing_writes_nothing(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    schedule = await create_schedule(client, world)
    await enroll(client, world, "P001")
    same = await patch_schedule(
        client, world, schedule["id"], events=standard_events(world), name="Visit schedule"
    )
    assert same["version"] == 1
    assert same["visits"] is None
    assert await audit_events(db_session, "schedule.update", study_id=world.study_id) == []

    renamed = await patch_schedule(client, world, schedule["id"], name="Main schedule")
    assert (renamed["version"], renamed["name"]) == (2, "Main schedule")
    assert renamed["events"] == schedule["events"]
    # Only the name changed: the visits follow version 2 but nothing about them moved.
    assert renamed["visits"]["created"] == 0 and renamed["visits"]["cancelled"] == 0


async def test_versions_are_kept_and_readable(client: httpx.AsyncClient, world: World) -> None:
    schedule = await create_schedule(client, world)
    await patch_schedule(client, world, schedule["id"], description="Amended")
    await patch_schedule(
        client, world, schedule["id"], reminder_quiet_hours={"start": "22:00", "end": "07:00"}
    )
    listed = await client.get(f"/api/schedules/{schedule['id']}/versions", headers=world.read_only)
    assert listed.status_code == 200, listed.text
    versions = listed.json()["data"]
    assert [(v["version"], v["is_current"]) for v in versions] == [
        (3, True),
        (2, False),
        (1, False),
    ]
    assert versions[0]["reminder_quiet_hours"] == {"start": "22:00", "end": "07:00"}
    assert versions[2]["description"] is None and versions[1]["description"] == "Amended"
    first = await client.get(
        f"/api/schedules/{schedule['id']}/versions/1", headers=world.coordinator
    )
    assert first.status_code == 200
    assert first.json()["events"] == schedule["events"]
    missing = await client.get(f"/api/schedules/{schedule['id']}/versions/9", headers=world.admin)
    assert missing.status_code == 404


async def test_only_configurers_change_a_schedule(client: httpx.AsyncClient, world: World) -> None:
    schedule = await create_schedule(client, world)
    for headers, expected in (
        (world.coordinator, 403),
        (world.read_only, 403),
        (world.outsider, 404),
        (world.admin, 200),
    ):
        response = await client.patch(
            f"/api/schedules/{schedule['id']}", headers=headers, json={"name": f"By {expected}"}
        )
        assert response.status_code == expected, response.text


async def test_a_rescheduled_visit_keeps_its_dates_through_a_new_version(
    client: httpx.AsyncClient, world: World
) -> None:
    schedule = await create_schedule(client, world)
    participant = await enroll(client, world, "P-RESCHED")
    week = by_key(await visits_of(client, world.coordinator, participant["id"]))["week-4#1"]
    new_due = (today_in("Europe/Paris") + timedelta(days=40)).isoformat()
    rescheduled = await client.post(
        f"/api/schedules/visits/{week['id']}/reschedule",
        headers=world.coordinator,
        json={"due_date": new_due, "reason": "travelling"},
    )
    assert rescheduled.status_code == 200, rescheduled.text

    events = standard_events(world)
    events[1] = event("week-4", 30, world.battery_id, before=3, after=3, label="Week 4 (v2)")
    await patch_schedule(client, world, schedule["id"], events=events)
    after = by_key(await visits_of(client, world.coordinator, participant["id"]))["week-4#1"]
    assert after["due_date"] == new_due  # the coordinator's date stands
    assert (after["schedule_version"], after["label"]) == (2, "Week 4 (v2)")

    await patch_schedule(client, world, schedule["id"], events=[events[0], events[2]])
    removed = by_key(await visits_of(client, world.coordinator, participant["id"]))["week-4#1"]
    assert removed["status"] == "cancelled"


async def test_withdrawn_participants_are_left_out_of_regeneration(
    client: httpx.AsyncClient, world: World
) -> None:
    schedule = await create_schedule(client, world)
    participant = await enroll(client, world, "P-GONE")
    withdrawn = await client.post(
        f"/api/participants/{participant['id']}/withdraw",
        headers=world.coordinator,
        json={"reason": "moved away"},
    )
    assert withdrawn.status_code == 200, withdrawn.text
    patched = await patch_schedule(client, world, schedule["id"], events=_version_2_events(world))
    assert patched["visits"] == {"participants": 0, "created": 0, "updated": 0, "cancelled": 0}
    visits = by_key(await visits_of(client, world.coordinator, participant["id"]))
    assert sorted(visits) == ["baseline#1", "month-6#1", "week-4#1"]
    assert {v["cancellation_reason"] for v in visits.values()} == {"participant_withdrawn"}
