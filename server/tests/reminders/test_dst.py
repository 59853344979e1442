"""Reminder instants across both DST changes of 2027, for a participant in Europe/Paris and one
in America/New_York: 09:00 local on the window's first day and 18:30 local on its last day, with
the change in between, so the two are an hour off what a fixed offset would give.

2027 changes: Paris 28 March (CET → CEST) and 31 October (CEST → CET); New York 14 March
(EST → EDT) and 7 November (EDT → EST). Each visit is due on the day of a change (enrollment +
28 days) with a window of one day either side."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from tests.reminders.conftest import closing_rule, reminders_of, scan
from tests.schedules.conftest import NEW_YORK, World, create_schedule, email_rule, enroll, event

# zone, enrollment date, (opening reminder, closing reminder) in UTC, worked out by hand.
CASES = {
    "paris-spring": (
        "PARIS",
        date(2027, 2, 28),
        (datetime(2027, 3, 27, 8, 0, tzinfo=UTC), datetime(2027, 3, 29, 16, 30, tzinfo=UTC)),
    ),
    "paris-autumn": (
        "PARIS",
        date(2027, 10, 3),
        (datetime(2027, 10, 30, 7, 0, tzinfo=UTC), datetime(2027, 11, 1, 17, 30, tzinfo=UTC)),
    ),
    "new-york-spring": (
        "NYC",
        date(2027, 2, 14),
        (datetime(2027, 3, 13, 14, 0, tzinfo=UTC), datetime(2027, 3, 15, 22, 30, tzinfo=UTC)),
    ),
    "new-york-autumn": (
        "NYC",
        date(2027, 10, 10),
        (datetime(2027, 11, 6, 13, 0, tzinfo=UTC), datetime(2027, 11, 8, 23, 30, tzinfo=UTC)),
    ),
}


async def test_reminders_are_sent_at_local_times_across_both_changes(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings, world: World
) -> None:
    await create_schedule(
        client,
        world,
        [
            event(
                "week-4",
                28,
                world.battery_id,
                before=1,
                after=1,
                reminders=[email_rule(), closing_rule()],
            )
        ],
    )
    participants = {}
    for name, (site, enrolled_on, _) in CASES.items():
        participants[name] = await enroll(
            client,
            world,
            name.upper(),
            site=site,
            enrollment_date=enrolled_on.isoformat(),
            email=f"{name}@example.org",
        )
    assert participants["new-york-spring"]["timezone"] == NEW_YORK

    # Each reminder is written by the tick that sees it within the horizon (an hour here), and
    # not before.
    settings = settings.model_copy(update={"REMINDER_SCAN_HORIZON_HOURS": 1.0})
    for name, (_, _, instants) in CASES.items():
        pid = str(participants[name]["id"])
        for number, instant in enumerate(instants, start=1):
            await scan(db_session, settings, instant - timedelta(hours=1, minutes=1))
            assert len(await reminders_of(db_session, pid)) == number - 1, name
            await scan(db_session, settings, instant - timedelta(minutes=59))
            rows = await reminders_of(db_session, pid)
            assert [row.send_at for row in rows] == list(instants[:number]), name
