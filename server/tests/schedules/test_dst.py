"""Visit windows across DST changes: a participant in Europe/Paris and one in America/New_York,
over the spring and autumn changes of 2026, checked against the UTC instants worked out by hand.

2026 changes: Paris 29 March 02:00 CET → 03:00 CEST and 25 October 03:00 CEST → 02:00 CET
(both at 01:00 UTC); New York 8 March 02:00 EST → 03:00 EDT (07:00 UTC) and 1 November
02:00 EDT → 01:00 EST (06:00 UTC). Each event is due on the day of a change with a window of
one day either side, so the change falls inside the window: 71 hours long in spring, 73 in
autumn, from local midnight to local midnight.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import TypedDict

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.schedule import Visit
from app.schemas.schedules import ReminderRule
from app.services.schedules.reminders import reminder_send_at
from app.services.schedules.timing import start_of_day
from tests.schedules.conftest import (
    NEW_YORK,
    PARIS,
    World,
    by_key,
    create_schedule,
    email_rule,
    enroll,
    event,
    sms_rule,
    visits_of,
)

# (zone, enrollment date, due date: enrollment + 28 days = the day of the change)
CASES = {
    "paris-spring": (PARIS, date(2026, 3, 1)),
    "paris-autumn": (PARIS, date(2026, 9, 27)),
    "new-york-spring": (NEW_YORK, date(2026, 2, 8)),
    "new-york-autumn": (NEW_YORK, date(2026, 10, 4)),
}


class Expected(TypedDict):
    due_date: str
    window: tuple[str, str]
    served: tuple[str, str, str]
    utc: tuple[datetime, datetime, datetime]
    hours: int


# What each visit must say: due_at, window_start, window_end as served (the participant's local
# offset), and the same instants in UTC.
EXPECTED: dict[str, Expected] = {
    "paris-spring": {
        "due_date": "2026-03-29",
        "window": ("2026-03-28", "2026-03-30"),
        "served": (
            "2026-03-29T00:00:00+01:00",
            "2026-03-28T00:00:00+01:00",
            "2026-03-31T00:00:00+02:00",
        ),
        "utc": (
            datetime(2026, 3, 28, 23, tzinfo=UTC),
            datetime(2026, 3, 27, 23, tzinfo=UTC),
            datetime(2026, 3, 30, 22, tzinfo=UTC),
        ),
        "hours": 71,
    },
    "paris-autumn": {
        "due_date": "2026-10-25",
        "window": ("2026-10-24", "2026-10-26"),
        "served": (
            "2026-10-25T00:00:00+02:00",
            "2026-10-24T00:00:00+02:00",
            "2026-10-27T00:00:00+01:00",
        ),
        "utc": (
            datetime(2026, 10, 24, 22, tzinfo=UTC),
            datetime(2026, 10, 23, 22, tzinfo=UTC),
            datetime(2026, 10, 26, 23, tzinfo=UTC),
        ),
        "hours": 73,
    },
    "new-york-spring": {
        "due_date": "2026-03-08",
        "window": ("2026-03-07", "2026-03-09"),
        "served": (
            "2026-03-08T00:00:00-05:00",
            "2026-03-07T00:00:00-05:00",
            "2026-03-10T00:00:00-04:00",
        ),
        "utc": (
            datetime(2026, 3, 8, 5, tzinfo=UTC),
            datetime(2026, 3, 7, 5, tzinfo=UTC),
            datetime(2026, 3, 10, 4, tzinfo=UTC),
        ),
        "hours": 71,
    },
    "new-york-autumn": {
        "due_date": "2026-11-01",
        "window": ("2026-10-31", "2026-11-02"),
        "served": (
            "2026-11-01T00:00:00-04:00",
            "2026-10-31T00:00:00-04:00",
            "2026-11-03T00:00:00-05:00",
        ),
        "utc": (
            datetime(2026, 11, 1, 4, tzinfo=UTC),
            datetime(2026, 10, 31, 4, tzinfo=UTC),
            datetime(2026, 11, 3, 5, tzinfo=UTC),
        ),
        "hours": 73,
    },
}


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_window_across_a_dst_change_runs_from_local_midnight_to_local_midnight(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World, case: str
) -> None:
    zone, enrolled_on = CASES[case]
    expected = EXPECTED[case]
    await create_schedule(client, world, [event("week-4", 28, world.battery_id, before=1, after=1)])
    participant = await enroll(
        client,
        world,
        f"DST-{case}",
        site="NYC" if zone == NEW_YORK else "PARIS",
        enrollment_date=enrolled_on.isoformat(),
    )
    assert participant["timezone"] == zone  # from the site
    [visit] = await visits_of(client, world.coordinator, participant["id"])
    assert visit["timezone"] == zone
    assert visit["due_date"] == expected["due_date"]
    assert (visit["window_start_date"], visit["window_end_date"]) == expected["window"]
    served = (visit["due_at"], visit["window_start"], visit["window_end"])
    assert served == expected["served"]
    assert tuple(_instant(value) for value in served) == expected["utc"]
    _, opens, closes = expected["utc"]
    assert closes - opens == timedelta(hours=expected["hours"])

    # The row holds the same instants in UTC (timestamptz on PostgreSQL, naive UTC on SQLite).
    row = await db_session.get(Visit, uuid.UUID(visit["id"]))
    assert row is not None
    assert (row.due_at, row.window_opens_at, row.window_closes_at) == expected["utc"]


async def test_a_weekly_event_keeps_local_midnight_across_the_change(
    client: httpx.AsyncClient, world: World
) -> None:
    """Weekly from 22 March 2026 in Paris: the same local midnight each week, so 7 days apart
    in UTC before the change and one hour less across it."""
    await create_schedule(
        client,
        world,
        [event("weekly", 21, world.battery_id, repeat={"every_days": 7, "count": 3})],
    )
    paris = await enroll(client, world, "WEEKLY-P", enrollment_date="2026-03-01")
    new_york = await enroll(client, world, "WEEKLY-NY", site="NYC", enrollment_date="2026-03-01")

    paris_visits = by_key(await visits_of(client, world.coordinator, paris["id"]))
    assert [paris_visits[f"weekly#{n}"]["window_start"] for n in (1, 2, 3)] == [
        "2026-03-22T00:00:00+01:00",
        "2026-03-29T00:00:00+01:00",  # the change happens at 02:00 that night
        "2026-04-05T00:00:00+02:00",
    ]
    assert [_instant(paris_visits[f"weekly#{n}"]["window_start"]) for n in (1, 2, 3)] == [
        datetime(2026, 3, 21, 23, tzinfo=UTC),
        datetime(2026, 3, 28, 23, tzinfo=UTC),
        datetime(2026, 4, 4, 22, tzinfo=UTC),
    ]
    # New York changed on 8 March already: every occurrence is in EDT.
    ny_visits = by_key(await visits_of(client, world.coordinator, new_york["id"]))
    assert [_instant(ny_visits[f"weekly#{n}"]["window_start"]) for n in (1, 2, 3)] == [
        datetime(2026, 3, 22, 4, tzinfo=UTC),
        datetime(2026, 3, 29, 4, tzinfo=UTC),
        datetime(2026, 4, 5, 4, tzinfo=UTC),
    ]


async def test_reminder_times_are_local_across_the_change(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    """09:00 local on the opening day (before the change) and 18:30 local on the last day
    (after it) are an hour apart in UTC terms from what a fixed offset would give."""
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
                reminders=[email_rule(), sms_rule()],
            )
        ],
    )
    paris = await enroll(client, world, "REMIND-P", enrollment_date="2026-03-01")
    new_york = await enroll(client, world, "REMIND-NY", site="NYC", enrollment_date="2026-10-04")
    on_opening, before_close = (
        ReminderRule.model_validate(email_rule()),
        ReminderRule.model_validate(sms_rule()),
    )
    [paris_visit] = await visits_of(client, world.coordinator, paris["id"])
    [ny_visit] = await visits_of(client, world.coordinator, new_york["id"])
    paris_row = await db_session.get(Visit, uuid.UUID(paris_visit["id"]))
    ny_row = await db_session.get(Visit, uuid.UUID(ny_visit["id"]))
    assert paris_row is not None and ny_row is not None
    # Paris: opens Saturday 28 March (CET), last day Monday 30 March (CEST).
    assert reminder_send_at(on_opening, paris_row) == datetime(2026, 3, 28, 8, tzinfo=UTC)
    assert reminder_send_at(before_close, paris_row) == datetime(2026, 3, 30, 16, 30, tzinfo=UTC)
    # New York: opens Saturday 31 October (EDT), last day Monday 2 November (EST).
    assert reminder_send_at(on_opening, ny_row) == datetime(2026, 10, 31, 13, tzinfo=UTC)
    assert reminder_send_at(before_close, ny_row) == datetime(2026, 11, 2, 23, 30, tzinfo=UTC)


def test_a_day_that_starts_after_a_gap_at_midnight() -> None:
    """Cuba moves its clocks at midnight: on 8 March 2026 the day starts at 01:00 CDT, and on
    1 November 2026 midnight happens twice (the first one starts the day)."""
    havana = "America/Havana"
    assert start_of_day(date(2026, 3, 7), havana) == datetime(2026, 3, 7, 5, tzinfo=UTC)
    assert start_of_day(date(2026, 3, 8), havana) == datetime(2026, 3, 8, 5, tzinfo=UTC)
    assert start_of_day(date(2026, 3, 9), havana) == datetime(2026, 3, 9, 4, tzinfo=UTC)
    assert start_of_day(date(2026, 11, 1), havana) == datetime(2026, 11, 1, 4, tzinfo=UTC)
    assert start_of_day(date(2026, 11, 2), havana) == datetime(2026, 11, 2, 5, tzinfo=UTC)
