"""Date arithmetic of visits: pure functions, no database.

A window is a span of whole days of the participant's calendar: it opens at the first instant of
its first day and closes at the first instant of the day after its last day. Both instants are
found with zoneinfo from the local date, so a DST change inside a window makes that window one
hour shorter (spring) or longer (autumn) while it still starts and ends at local midnight.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo

from app.models.schedule import VisitStatus


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The IANA zone (names are validated where they are stored)."""
    return ZoneInfo(name)


def start_of_day(day: date, timezone: str) -> datetime:
    """The first instant of `day` in `timezone`, in UTC.

    Local midnight with fold=0: where a zone skips midnight (a DST change at 00:00, as in
    America/Havana or America/Santiago) zoneinfo reads the missing time with the offset in
    force before the gap, which is exactly the instant the day begins; where midnight happens
    twice, fold=0 is the first one.
    """
    return datetime.combine(day, time(0), tzinfo=zone(timezone)).astimezone(UTC)


def local_date(moment: datetime, timezone: str) -> date:
    """The participant's calendar day at `moment`."""
    return moment.astimezone(zone(timezone)).date()


@dataclass(frozen=True, slots=True)
class Window:
    due_date: date
    start_date: date
    end_date: date  # the last day, included
    due_at: datetime
    opens_at: datetime
    closes_at: datetime


def window(due_date: date, before_days: int, after_days: int, timezone: str) -> Window:
    start_date = due_date - timedelta(days=before_days)
    end_date = due_date + timedelta(days=after_days)
    return window_between(due_date, start_date, end_date, timezone)


def window_between(due_date: date, start_date: date, end_date: date, timezone: str) -> Window:
    return Window(
        due_date=due_date,
        start_date=start_date,
        end_date=end_date,
        due_at=start_of_day(due_date, timezone),
        opens_at=start_of_day(start_date, timezone),
        closes_at=start_of_day(end_date + timedelta(days=1), timezone),
    )


def occurrence_due_dates(
    anchor_date: date, offset_days: int, repeat_every_days: int | None, repeat_count: int
) -> list[tuple[int, date]]:
    """(occurrence number from 1, due date) of every occurrence of an event."""
    first = anchor_date + timedelta(days=offset_days)
    if repeat_every_days is None:
        return [(1, first)]
    return [
        (index + 1, first + timedelta(days=index * repeat_every_days))
        for index in range(repeat_count)
    ]


def status_at(
    stored: VisitStatus, opens_at: datetime, closes_at: datetime, now: datetime
) -> VisitStatus:
    """A visit's status at `now`: completed and cancelled are final; otherwise the window and
    the clock decide, whatever the periodic scan has stored so far."""
    if stored in (VisitStatus.COMPLETED, VisitStatus.CANCELLED):
        return stored
    if now >= closes_at:
        return VisitStatus.MISSED
    if now >= opens_at:
        return VisitStatus.OPEN
    return VisitStatus.SCHEDULED


class WindowedVisit(Protocol):
    """The fields a visit's window sets: on a stored visit or on one being planned."""

    timezone: str
    due_date: date
    window_start_date: date
    window_end_date: date
    due_at: datetime
    window_opens_at: datetime
    window_closes_at: datetime
    status: VisitStatus


def place_in_window(visit: WindowedVisit, timing: Window, timezone: str, now: datetime) -> None:
    """Give `visit` the window `timing` in `timezone`, and the status that window means now
    (scheduled, open or missed: placing a visit starts it afresh)."""
    visit.timezone = timezone
    visit.due_date = timing.due_date
    visit.window_start_date = timing.start_date
    visit.window_end_date = timing.end_date
    visit.due_at = timing.due_at
    visit.window_opens_at = timing.opens_at
    visit.window_closes_at = timing.closes_at
    visit.status = status_at(VisitStatus.SCHEDULED, timing.opens_at, timing.closes_at, now)
