"""apply_quiet_hours: a send time inside quiet hours moves to their end, in the participant's
local time, across daylight-saving changes (Europe/Paris and America/New_York, 2026)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.services.notifications.quiet_hours import QuietHours, apply_quiet_hours

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
NIGHT = (time(21, 0), time(8, 0))


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("send_at", "tz", "quiet", "expected"),
    [
        # Outside quiet hours: unchanged (12:00 in Paris, summer time).
        (utc(2026, 6, 10, 10, 0), PARIS, NIGHT, utc(2026, 6, 10, 10, 0)),
        # Late evening: the next morning at 08:00 local (UTC+2 in June).
        (utc(2026, 6, 10, 20, 30), PARIS, NIGHT, utc(2026, 6, 11, 6, 0)),
        # Early morning: the same morning at 08:00.
        (utc(2026, 6, 10, 3, 0), PARIS, NIGHT, utc(2026, 6, 10, 6, 0)),
        # The start is quiet, the end is not.
        (utc(2026, 6, 10, 19, 0), PARIS, NIGHT, utc(2026, 6, 11, 6, 0)),
        (utc(2026, 6, 10, 6, 0), PARIS, NIGHT, utc(2026, 6, 10, 6, 0)),
        # Quiet hours that do not cross midnight (a lunch break).
        (utc(2026, 1, 15, 11, 30), PARIS, (time(12), time(14)), utc(2026, 1, 15, 13, 0)),
        # Spring forward in Paris (29 March 2026, 02:00 CET -> 03:00 CEST): a message asked for
        # at 22:00 CET leaves at 08:00 CEST, 06:00 UTC, ten hours later, not eleven.
        (utc(2026, 3, 28, 21, 0), PARIS, NIGHT, utc(2026, 3, 29, 6, 0)),
        # Fall back in Paris (25 October 2026): 08:00 CET is 07:00 UTC.
        (utc(2026, 10, 24, 21, 0), PARIS, NIGHT, utc(2026, 10, 25, 7, 0)),
        # Spring forward in New York (8 March 2026): 08:00 EDT is 12:00 UTC.
        (utc(2026, 3, 8, 4, 0), NEW_YORK, NIGHT, utc(2026, 3, 8, 12, 0)),
        # Fall back in New York (1 November 2026): 08:00 EST is 13:00 UTC.
        (utc(2026, 11, 1, 3, 0), NEW_YORK, NIGHT, utc(2026, 11, 1, 13, 0)),
        # Quiet hours ending at 02:30, a time Paris skips on 29 March: the instant the clock
        # jumps past it, 03:00 CEST (01:00 UTC).
        (utc(2026, 3, 29, 0, 0), PARIS, (time(22), time(2, 30)), utc(2026, 3, 29, 1, 0)),
        # Quiet hours ending at 01:30, a time New York shows twice on 1 November: the first
        # showing (EDT) for a message asked for before it...
        (utc(2026, 11, 1, 4, 30), NEW_YORK, (time(22), time(1, 30)), utc(2026, 11, 1, 5, 30)),
        # ...and the second (EST) for one asked for at 01:10 EST, after the first had passed.
        (utc(2026, 11, 1, 6, 10), NEW_YORK, (time(22), time(1, 30)), utc(2026, 11, 1, 6, 30)),
        # No quiet hours when start and end are equal.
        (utc(2026, 6, 10, 23, 0), PARIS, (time(0), time(0)), utc(2026, 6, 10, 23, 0)),
    ],
)
def test_send_times_move_to_the_end_of_quiet_hours(
    send_at: datetime, tz: ZoneInfo, quiet: tuple[time, time], expected: datetime
) -> None:
    moved = apply_quiet_hours(send_at, tz, *quiet)
    assert moved == expected
    assert moved.utcoffset() == timedelta(0)


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        apply_quiet_hours(datetime(2026, 6, 10, 22, 0), PARIS, *NIGHT)


QUIET_HOURS = st.sampled_from(
    [NIGHT, (time(22), time(2, 30)), (time(22), time(1, 30)), (time(12), time(14))]
)
INSTANTS = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=400, deadline=None)
@given(send_at=INSTANTS, tz=st.sampled_from([PARIS, NEW_YORK]), quiet=QUIET_HOURS)
def test_the_result_is_the_first_moment_outside_quiet_hours(
    send_at: datetime, tz: ZoneInfo, quiet: tuple[time, time]
) -> None:
    window = QuietHours(*quiet)
    moved = apply_quiet_hours(send_at, tz, *quiet)

    def quiet_at(instant: datetime) -> bool:
        return window.contains(instant.astimezone(tz).time())

    assert moved >= send_at
    assert not quiet_at(moved)
    if moved > send_at:
        # Every second before it, back to the asked time, is quiet: no earlier moment would do.
        assert quiet_at(send_at)
        assert quiet_at(moved - timedelta(seconds=1))
        assert (moved - send_at) < timedelta(hours=24)
