"""Quiet hours: local times of day when no message is sent to a participant.

Pure functions on aware datetimes and `ZoneInfo`, so daylight-saving changes are the zone
database's business, not arithmetic on offsets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from app.config import Settings


@dataclass(frozen=True, slots=True)
class QuietHours:
    """From `start` (included) to `end` (excluded), local wall-clock times; crosses midnight
    when `start` is later than `end` (21:00 to 08:00). Equal times mean no quiet hours."""

    start: time
    end: time

    @classmethod
    def from_settings(cls, settings: Settings) -> QuietHours:
        return cls(settings.NOTIFICATION_QUIET_HOURS_START, settings.NOTIFICATION_QUIET_HOURS_END)

    def contains(self, wall_time: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= wall_time < self.end
        return wall_time >= self.start or wall_time < self.end


def apply_quiet_hours(
    send_at_utc: datetime, tz: ZoneInfo, quiet_start: time, quiet_end: time
) -> datetime:
    """`send_at_utc` if it falls outside quiet hours in `tz`; otherwise the first instant after
    it at which the local clock shows `quiet_end`, in UTC.

    On a spring-forward day a `quiet_end` the clock skips (02:30 in Paris) becomes the instant
    the clock jumps past it (03:00 local); on a fall-back day a `quiet_end` the clock shows twice
    is its first showing after `send_at_utc`. The answer is never earlier than `send_at_utc`.
    """
    if send_at_utc.tzinfo is None:
        raise ValueError("send_at_utc must be timezone-aware")
    quiet = QuietHours(quiet_start, quiet_end)
    local = send_at_utc.astimezone(tz)
    wall = local.time().replace(tzinfo=None)
    if not quiet.contains(wall):
        return send_at_utc
    # Inside quiet hours that cross midnight, after their start: they end tomorrow.
    crosses_midnight = quiet_start > quiet_end
    end_day = (
        local.date() + timedelta(days=1)
        if crosses_midnight and wall >= quiet_start
        else local.date()
    )
    wanted = datetime.combine(end_day, quiet_end)
    return _first_instant_showing(wanted, tz, not_before=send_at_utc.astimezone(UTC))


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def _first_instant_showing(wanted: datetime, tz: ZoneInfo, *, not_before: datetime) -> datetime:
    """The earliest instant, not before `not_before`, at which the local clock in `tz` shows
    `wanted` (a naive wall-clock time) or, when the clock skips it, has just passed it."""
    # fold=0 and fold=1 are the two readings of a wall time around a transition: the same
    # instant on ordinary days, two instants when the clock shows it twice.
    readings = sorted({wanted.replace(tzinfo=tz, fold=fold).astimezone(UTC) for fold in (0, 1)})
    shown = [instant for instant in readings if _wall(instant, tz) == wanted]
    if not shown:
        shown = [_end_of_gap(wanted, tz, readings[0], readings[-1])]
    later = [instant for instant in shown if instant >= not_before]
    return min(later) if later else not_before


def _end_of_gap(wanted: datetime, tz: ZoneInfo, low: datetime, high: datetime) -> datetime:
    """The instant the clock jumps over `wanted`: the first second between `low` (before the
    jump) and `high` (after it) whose wall-clock time is past `wanted`."""
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if _wall(middle, tz) >= wanted:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)
