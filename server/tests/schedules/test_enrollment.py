"""Visits are made on enrollment, through the API and the CSV import, in the same transaction;
time zones default to the site's, then the study's; changes to a participant's dates or zone
move the visits that have not started."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.models.schedule import Visit
from app.services.schedules.timing import local_date
from tests.schedules.conftest import (
    NEW_YORK,
    PARIS,
    World,
    audit_events,
    by_key,
    create_schedule,
    days_ago,
    enroll,
    event,
    today_in,
    visits_of,
)


async def _visit_count(db_session: AsyncSession, study_id: uuid.UUID) -> int:
    return int(
        await db_session.scalar(
            select(func.count()).select_from(Visit).where(Visit.study_id == study_id)
        )
        or 0
    )


async def test_enrollment_through_the_api_makes_every_visit(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    schedule = await create_schedule(client, world)
    participant = await enroll(client, world, "P001")
    enrolled_on = today_in(PARIS)
    assert participant["enrollment_date"] == enrolled_on.isoformat()

    visits = by_key(await visits_of(client, world.coordinator, participant["id"]))
    assert sorted(visits) == ["baseline#1", "month-6#1", "week-4#1"]
    baseline = visits["baseline#1"]
    assert baseline["status"] == "open"
    assert baseline["schedule_id"] == schedule["id"]
    assert baseline["schedule_version"] == 1
    assert baseline["label"] == "Baseline"
    assert baseline["battery_id"] == str(world.battery_id)
    assert baseline["anchor"] == "enrollment_date"
    assert baseline["anchor_date"] == enrolled_on.isoformat()
    assert baseline["participant_code"] == "P001"
    assert baseline["site_id"] == str(world.paris_site_id)
    assert (baseline["window_start_date"], baseline["window_end_date"]) == (
        enrolled_on.isoformat(),
        (enrolled_on + timedelta(days=7)).isoformat(),
    )
    week_4 = visits["week-4#1"]
    assert week_4["status"] == "scheduled"
    assert week_4["due_date"] == (enrolled_on + timedelta(days=28)).isoformat()
    assert week_4["window_start_date"] == (enrolled_on + timedelta(days=25)).isoformat()
    assert visits["month-6#1"]["battery_id"] == str(world.second_battery_id)
    assert all(v["session_id"] is None for v in visits.values())

    [generated] = await audit_events(db_session, "visits.generated", study_id=world.study_id)
    assert generated.participant_id == uuid.UUID(participant["id"])
    assert generated.category == "visit"
    assert generated.after is not None
    assert generated.after["schedule_version"] == 1
    assert sorted(v["id"] for v in generated.after["created"]) == sorted(
        v["id"] for v in visits.values()
    )


async def test_a_backdated_enrollment_has_its_past_visits_missed(
    client: httpx.AsyncClient, world: World
) -> None:
    await create_schedule(client, world)
    participant = await enroll(client, world, "P-LATE", enrollment_date=days_ago(200))
    visits = by_key(await visits_of(client, world.coordinator, participant["id"]))
    assert {key: v["status"] for key, v in visits.items()} == {
        "baseline#1": "missed",
        "week-4#1": "missed",
        "month-6#1": "missed",  # its window closed 196 days after enrollment
    }


async def test_a_screened_participant_has_no_visits_until_enrolled(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    await create_schedule(client, world)
    screened = await enroll(client, world, "P-SCREEN", status="screened")
    assert screened["enrollment_date"] is None
    assert await visits_of(client, world.coordinator, screened["id"]) == []

    enrolled = await client.patch(
        f"/api/participants/{screened['id']}",
        headers=world.coordinator,
        json={"status": "enrolled", "reason": "eligible"},
    )
    assert enrolled.status_code == 200, enrolled.text
    assert enrolled.json()["enrollment_date"] == today_in(PARIS).isoformat()
    visits = await visits_of(client, world.coordinator, screened["id"])
    assert len(visits) == 3
    assert len(await audit_events(db_session, "visits.generated", study_id=world.study_id)) == 1


async def test_without_a_schedule_enrollment_makes_no_visits(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    participant = await enroll(client, world, "P-NOSCHED")
    assert await visits_of(client, world.coordinator, participant["id"]) == []
    assert await audit_events(db_session, "visits.generated", study_id=world.study_id) == []


async def test_time_zone_defaults_to_the_site_then_the_study(
    client: httpx.AsyncClient, world: World
) -> None:
    at_new_york = await enroll(client, world, "P-NY", site="NYC")
    assert at_new_york["timezone"] == NEW_YORK
    own = await enroll(client, world, "P-OWN", site="NYC", timezone="Asia/Tokyo")
    assert own["timezone"] == "Asia/Tokyo"

    changed = await client.patch(
        f"/api/studies/{world.study_id}",
        headers=world.researcher,
        json={"timezone": "Europe/Lisbon"},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["timezone"] == "Europe/Lisbon"
    response = await client.post(
        "/api/participants",
        headers=world.coordinator,
        json={"study_id": str(world.study_id), "participant_id": "P-NOSITE"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["timezone"] == "Europe/Lisbon"
    site = await client.post(
        f"/api/studies/{world.study_id}/sites",
        headers=world.researcher,
        json={"code": "LIS", "name": "Lisbon"},
    )
    assert site.status_code == 201, site.text
    assert site.json()["timezone"] == "Europe/Lisbon"

    bad = await client.patch(
        f"/api/studies/{world.study_id}", headers=world.researcher, json={"timezone": "Mars/Base"}
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["details"]["errors"][0]["field"] == "timezone"


async def test_the_default_enrollment_date_is_the_participants_own_day(
    client: httpx.AsyncClient, world: World
) -> None:
    """Kiritimati (UTC+14) is a day ahead of UTC after 10:00 UTC, Pago Pago (UTC-11) a day
    behind before 11:00 UTC: at any time one of them is not on the UTC date."""
    now = utcnow()
    dates = {}
    for code, zone in (("P-KIRI", "Pacific/Kiritimati"), ("P-PAGO", "Pacific/Pago_Pago")):
        participant = await enroll(client, world, code, timezone=zone)
        dates[zone] = participant["enrollment_date"]
        assert participant["enrollment_date"] == local_date(utcnow(), zone).isoformat()
    # What makes this test bite: a UTC date would be wrong for at least one of them.
    assert any(day != now.date().isoformat() for day in dates.values())


async def test_events_anchored_on_the_participants_own_date(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    await create_schedule(
        client,
        world,
        [
            event("baseline", 0, world.battery_id, after=7),
            event("post-op", 14, world.battery_id, before=2, after=2, anchor="anchor_date"),
        ],
    )
    participant = await enroll(client, world, "P-ANCHOR")
    assert sorted(by_key(await visits_of(client, world.coordinator, participant["id"]))) == [
        "baseline#1"
    ]
    surgery = today_in(PARIS) + timedelta(days=10)
    patched = await client.patch(
        f"/api/participants/{participant['id']}",
        headers=world.coordinator,
        json={"anchor_date": surgery.isoformat(), "reason": "surgery booked"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["anchor_date"] == surgery.isoformat()
    visits = by_key(await visits_of(client, world.coordinator, participant["id"]))
    post_op = visits["post-op#1"]
    assert post_op["anchor"] == "anchor_date"
    assert post_op["anchor_date"] == surgery.isoformat()
    assert post_op["due_date"] == (surgery + timedelta(days=14)).isoformat()

    moved = surgery + timedelta(days=5)
    await client.patch(
        f"/api/participants/{participant['id']}",
        headers=world.coordinator,
        json={"anchor_date": moved.isoformat(), "reason": "surgery postponed"},
    )
    again = by_key(await visits_of(client, world.coordinator, participant["id"]))
    assert again["post-op#1"]["id"] == post_op["id"]  # the same visit, moved
    assert again["post-op#1"]["due_date"] == (moved + timedelta(days=14)).isoformat()
    assert again["baseline#1"] == visits["baseline#1"]  # open: untouched
    events = await audit_events(db_session, "visits.regenerated", study_id=world.study_id)
    assert [e.after["because_of"] for e in events if e.after] == [["anchor_date"], ["anchor_date"]]
    assert [e.reason for e in events] == ["surgery booked", "surgery postponed"]


async def test_a_new_time_zone_moves_the_visits_that_have_not_started(
    client: httpx.AsyncClient, world: World
) -> None:
    await create_schedule(client, world)
    participant = await enroll(client, world, "P-MOVE")
    before = by_key(await visits_of(client, world.coordinator, participant["id"]))
    patched = await client.patch(
        f"/api/participants/{participant['id']}",
        headers=world.coordinator,
        json={"timezone": NEW_YORK, "reason": "moved to New York"},
    )
    assert patched.status_code == 200, patched.text
    after = by_key(await visits_of(client, world.coordinator, participant["id"]))
    # Open already: kept in the zone it opened in.
    assert after["baseline#1"] == before["baseline#1"]
    for key in ("week-4#1", "month-6#1"):
        assert after[key]["id"] == before[key]["id"]
        assert after[key]["timezone"] == NEW_YORK
        assert after[key]["window_start_date"] == before[key]["window_start_date"]
        assert after[key]["window_start"].endswith(("-04:00", "-05:00"))
        assert after[key]["window_start"][:19] == before[key]["window_start"][:19]


CSV_HEADER = "participant_id,site,status,enrollment_date,anchor_date\n"


async def _import(
    client: httpx.AsyncClient, world: World, content: str, *, dry_run: bool
) -> httpx.Response:
    return await client.post(
        "/api/participants/import",
        headers=world.coordinator,
        data={"study_id": str(world.study_id), "dry_run": "true" if dry_run else "false"},
        files={"file": ("participants.csv", content.encode(), "text/csv")},
    )


async def test_a_csv_import_makes_the_visits_of_enrolled_rows(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    await create_schedule(
        client,
        world,
        [
            event("baseline", 0, world.battery_id, after=7),
            event("post-op", 14, world.battery_id, anchor="anchor_date"),
        ],
    )
    content = CSV_HEADER + (
        f"IMP-1,PARIS,enrolled,{days_ago(3)},\n"
        f"IMP-2,NYC,,,{days_ago(1, NEW_YORK)}\n"
        "IMP-3,PARIS,screened,,\n"
    )
    dry = await _import(client, world, content, dry_run=True)
    assert dry.status_code == 200, dry.text
    assert await _visit_count(db_session, world.study_id) == 0

    done = await _import(client, world, content, dry_run=False)
    assert done.status_code == 201, done.text
    listed = await client.get(
        "/api/participants",
        headers=world.coordinator,
        params={"study_id": str(world.study_id), "per_page": "100"},
    )
    ids = {p["participant_id"]: p for p in listed.json()["data"]}
    assert ids["IMP-2"]["timezone"] == NEW_YORK
    assert ids["IMP-2"]["enrollment_date"] == today_in(NEW_YORK).isoformat()
    first = by_key(await visits_of(client, world.coordinator, ids["IMP-1"]["id"]))
    assert sorted(first) == ["baseline#1"]  # no anchor date: no post-op visit
    assert first["baseline#1"]["anchor_date"] == days_ago(3)
    assert first["baseline#1"]["status"] == "open"
    second = by_key(await visits_of(client, world.coordinator, ids["IMP-2"]["id"]))
    assert sorted(second) == ["baseline#1", "post-op#1"]
    assert second["post-op#1"]["timezone"] == NEW_YORK
    assert await visits_of(client, world.coordinator, ids["IMP-3"]["id"]) == []

    [imported] = await audit_events(db_session, "participant.import", study_id=world.study_id)
    assert imported.after is not None and imported.after["visits_created"] == 3


async def test_an_invalid_import_makes_nothing(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    await create_schedule(client, world)
    content = CSV_HEADER + "IMP-1,PARIS,enrolled,,\nIMP-2,PARIS,enrolled,,not-a-date\n"
    refused = await _import(client, world, content, dry_run=False)
    assert refused.status_code == 422, refused.text
    row = refused.json()["error"]["details"]["rows"][1]
    assert row["errors"] == [{"field": "anchor_date", "message": "Use an ISO date, YYYY-MM-DD"}]
    assert await _visit_count(db_session, world.study_id) == 0
