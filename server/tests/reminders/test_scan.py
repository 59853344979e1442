"""The reminder scan: one notification per (visit, rule), at the rule's local time, written once
however often the scan runs; late reminders, opted-out participants and missing addresses
skipped; pending reminders cancelled when the visit completes, moves or the participant leaves.

Visits are in 2027 and the scan is given its `now`, so the tests do not depend on the clock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.models.notification import NotificationKind, NotificationStatus
from app.models.schedule import REMINDERS_NOT_COMPUTED, Visit
from app.services.schedules.reminder_scan import NO_MORE_REMINDERS
from tests.reminders.conftest import closing_rule, reminders_of, scan
from tests.schedules.conftest import PARIS, World, create_schedule, email_rule, enroll, event

ENROLLED = "2027-01-11"  # a Monday; Paris is on CET (UTC+1)
# The baseline window: 11 to 18 January, Paris local days.
OPENS_REMINDER = datetime(2027, 1, 11, 8, 0, tzinfo=UTC)  # 09:00 CET on the first day
CLOSES_REMINDER = datetime(2027, 1, 18, 17, 30, tzinfo=UTC)  # 18:30 CET on the last day


async def _setup(
    client: httpx.AsyncClient, world: World, code: str = "R001", **fields: Any
) -> dict[str, Any]:
    await create_schedule(
        client,
        world,
        [
            event(
                "baseline",
                0,
                world.battery_id,
                after=7,
                reminders=[email_rule(), closing_rule()],
            )
        ],
    )
    return await enroll(
        client, world, code, enrollment_date=ENROLLED, email=f"{code.lower()}@example.org", **fields
    )


async def test_each_rule_is_written_once_when_it_comes_within_the_horizon(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings, world: World
) -> None:
    participant = await _setup(client, world, language="fr")
    pid = str(participant["id"])

    first = await scan(db_session, settings, OPENS_REMINDER - timedelta(hours=1))
    assert (first.visits, first.written) == (1, 1)
    [opening] = await reminders_of(db_session, pid)
    assert opening.send_at == OPENS_REMINDER
    assert (opening.kind, opening.status) == (
        NotificationKind.VISIT_REMINDER,
        NotificationStatus.SCHEDULED,
    )
    # In the participant's language, placeholders filled in, the link left for the send.
    assert opening.language == "fr"
    assert opening.subject == "Votre visite Baseline est ouverte"
    assert opening.body == "Bonjour R001, avant le 2027-01-18 : {link}"
    visit = await db_session.scalar(select(Visit).where(Visit.participant_id == uuid.UUID(pid)))
    assert visit is not None
    await db_session.refresh(visit)
    assert visit.reminders_next_at == CLOSES_REMINDER

    # Later ticks before the next reminder is near do not even look at the visit.
    again = await scan(db_session, settings, OPENS_REMINDER + timedelta(hours=2))
    assert (again.visits, again.written) == (0, 0)

    closing = await scan(db_session, settings, CLOSES_REMINDER - timedelta(hours=20))
    assert (closing.visits, closing.written) == (1, 1)
    rows = await reminders_of(db_session, pid)
    assert [row.send_at for row in rows] == [OPENS_REMINDER, CLOSES_REMINDER]
    assert rows[1].language == "en"  # the closing rule has no French template: the study's first
    await db_session.refresh(visit)
    assert visit.reminders_next_at == NO_MORE_REMINDERS


async def test_a_scan_that_runs_again_writes_nothing_twice(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings, world: World
) -> None:
    participant = await _setup(client, world)
    now = CLOSES_REMINDER - timedelta(hours=1)
    settings = settings.model_copy(
        update={"REMINDER_SCAN_HORIZON_HOURS": 24 * 8.0, "REMINDER_MAX_LATENESS_HOURS": 24 * 8.0}
    )
    first = await scan(db_session, settings, now)
    assert first.written == 2
    # As if the visit's cursor had not been stored (a scan that died after its inserts, or a
    # second scan that read the visit before the first committed): the keys hold.
    await db_session.execute(update(Visit).values(reminders_next_at=REMINDERS_NOT_COMPUTED))
    second = await scan(db_session, settings, now)
    assert (second.visits, second.written, second.already_written) == (1, 0, 2)
    assert len(await reminders_of(db_session, str(participant["id"]))) == 2


async def test_late_reminders_are_skipped_and_recent_ones_sent_at_once(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings, world: World
) -> None:
    participant = await _setup(client, world)
    # Seven hours after 09:00: later than REMINDER_MAX_LATENESS_HOURS (6).
    late = await scan(db_session, settings, OPENS_REMINDER + timedelta(hours=7))
    assert (late.written, late.too_late) == (0, 1)
    assert await reminders_of(db_session, str(participant["id"])) == []

    other = await enroll(client, world, "R002", enrollment_date=ENROLLED, email="r002@example.org")
    recent = await scan(db_session, settings, OPENS_REMINDER + timedelta(hours=5))
    assert (recent.written, recent.too_late) == (1, 0)
    [row] = await reminders_of(db_session, str(other["id"]))
    assert row.send_at == OPENS_REMINDER  # in the past: the dispatcher sends it at once


async def test_opted_out_and_unreachable_participants_get_no_reminder(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings, world: World
) -> None:
    opted_out = await _setup(client, world)
    response = await client.put(
        f"/api/participants/{opted_out['id']}/notification-preferences",
        headers=world.coordinator,
        json={"email_subscribed": False, "reason": "asked by phone"},
    )
    assert response.status_code == 200, response.text
    no_email = await enroll(client, world, "R002", enrollment_date=ENROLLED)

    report = await scan(db_session, settings, OPENS_REMINDER - timedelta(minutes=5))
    assert (report.visits, report.written, report.unsubscribed, report.no_contact) == (2, 0, 1, 1)
    assert await reminders_of(db_session, str(opted_out["id"])) == []
    assert await reminders_of(db_session, str(no_email["id"])) == []


async def test_a_rescheduled_visit_cancels_its_reminders_and_gets_new_ones(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings, world: World
) -> None:
    participant = await _setup(client, world)
    pid = str(participant["id"])
    settings = settings.model_copy(update={"REMINDER_SCAN_HORIZON_HOURS": 24 * 10.0})
    await scan(db_session, settings, OPENS_REMINDER - timedelta(hours=1))
    assert len(await reminders_of(db_session, pid)) == 2
    [visit] = (
        await client.get(
            "/api/schedules/visits", headers=world.coordinator, params={"participant_id": pid}
        )
    ).json()["data"]

    moved = await client.post(
        f"/api/schedules/visits/{visit['id']}/reschedule",
        headers=world.coordinator,
        json={"due_date": "2027-01-13", "reason": "travelling"},
    )
    assert moved.status_code == 200, moved.text
    cancelled = await reminders_of(db_session, pid)
    assert {(row.status, row.cancel_reason) for row in cancelled} == {
        (NotificationStatus.CANCELLED, "visit_rescheduled")
    }

    report = await scan(db_session, settings, OPENS_REMINDER - timedelta(hours=1))
    assert report.written == 2
    fresh = [
        row
        for row in await reminders_of(db_session, pid)
        if row.status is NotificationStatus.SCHEDULED
    ]
    # The new window: 13 to 20 January.
    assert [row.send_at for row in fresh] == [
        datetime(2027, 1, 13, 8, 0, tzinfo=UTC),
        datetime(2027, 1, 20, 17, 30, tzinfo=UTC),
    ]
    assert all(":1:" in row.dedupe_key for row in fresh)


async def test_withdrawal_cancels_pending_reminders(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings, world: World
) -> None:
    participant = await _setup(client, world)
    pid = str(participant["id"])
    await scan(db_session, settings, OPENS_REMINDER - timedelta(hours=1))
    response = await client.post(
        f"/api/participants/{pid}/withdraw",
        headers=world.coordinator,
        json={"scope": "stop_collection", "reason": "moved away"},
    )
    assert response.status_code == 200, response.text
    [row] = await reminders_of(db_session, pid)
    assert (row.status, row.cancel_reason) == (
        NotificationStatus.CANCELLED,
        "participant_withdrawn",
    )
    # The visit is cancelled: no later scan plans its closing reminder.
    report = await scan(db_session, settings, CLOSES_REMINDER - timedelta(hours=1))
    assert report.visits == 0


async def test_a_schedule_change_cancels_reminders_of_moved_visits(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings, world: World
) -> None:
    participant = await _setup(client, world)
    pid = str(participant["id"])
    settings = settings.model_copy(update={"REMINDER_SCAN_HORIZON_HOURS": 24 * 60.0})
    # Planned a month early (the rule sends on opening; the horizon reaches it).
    early = OPENS_REMINDER - timedelta(days=30)
    assert (await scan(db_session, settings, early)).written == 2
    schedule = (
        await client.get(
            "/api/schedules", headers=world.researcher, params={"study_id": str(world.study_id)}
        )
    ).json()["data"][0]
    response = await client.patch(
        f"/api/schedules/{schedule['id']}",
        headers=world.researcher,
        json={
            "events": [event("baseline", 2, world.battery_id, after=7, reminders=[email_rule()])],
            "reason": "baseline two days later",
        },
    )
    assert response.status_code == 200, response.text
    rows = await reminders_of(db_session, pid)
    assert {row.cancel_reason for row in rows} == {"schedule_changed"}
    report = await scan(db_session, settings, early)
    assert report.written == 1
    [fresh] = [
        row
        for row in await reminders_of(db_session, pid)
        if row.status is NotificationStatus.SCHEDULED
    ]
    assert fresh.send_at == datetime(2027, 1, 13, 8, 0, tzinfo=UTC)


async def test_a_change_does_not_send_again_a_reminder_whose_time_has_passed(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings, world: World
) -> None:
    """A reminder three days before the window opens went out an hour ago; then the schedule
    changes (the visit has not opened, so it moves to the new version): the new round starts
    at the change, so the same reminder is not sent a second time."""
    local_now = utcnow().astimezone(ZoneInfo(PARIS))
    if local_now.hour < 1:
        pytest.skip("an hour ago was yesterday in Paris")
    an_hour_ago = (local_now - timedelta(hours=1)).strftime("%H:%M")
    early = email_rule(offset_days=-3, local_time=an_hour_ago)
    schedule = await create_schedule(
        client, world, [event("week-1", 3, world.battery_id, after=3, reminders=[early])]
    )
    participant = await enroll(client, world, "R009", email="r009@example.org")
    pid = str(participant["id"])
    assert (await scan(db_session, settings, utcnow())).written == 1
    [sent] = await reminders_of(db_session, pid)
    sent.status = NotificationStatus.SENT
    await db_session.flush()

    response = await client.patch(
        f"/api/schedules/{schedule['id']}",
        headers=world.researcher,
        json={
            "events": [
                event("week-1", 3, world.battery_id, after=3, label="Week one", reminders=[early])
            ],
            "reason": "label",
        },
    )
    assert response.status_code == 200, response.text
    visit = await db_session.scalar(
        select(Visit)
        .where(Visit.participant_id == uuid.UUID(pid))
        .execution_options(populate_existing=True)
    )
    assert visit is not None and visit.reminder_round == 1

    report = await scan(db_session, settings, utcnow())
    assert (report.visits, report.written) == (1, 0)
    assert len(await reminders_of(db_session, pid)) == 1
