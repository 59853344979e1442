"""When a reminder rule sends for a visit: the rule format is in app/schemas/schedules.py.

The sending itself (the notifications outbox, templates filled in, quiet hours applied to
retries) belongs to the reminders step; these functions fix what a rule means, so that step and
the validation of schedules agree.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from app.models.schedule import Visit
from app.schemas.schedules import ReminderAnchor, ReminderRule, local_time_of
from app.services.schedules.definitions import reminder_rules
from app.services.schedules.timing import zone

__all__ = ["reminder_day", "reminder_rules", "reminder_send_at", "rule_send_at"]


def reminder_day(rule: ReminderRule, window_start_date: date, window_end_date: date) -> date:
    """The participant's calendar day the rule sends on: day 0 is the window's first day
    (`window_open`) or the day after its last day, when it closes (`window_close`)."""
    if rule.anchor is ReminderAnchor.WINDOW_OPEN:
        return window_start_date + timedelta(days=rule.offset_days)
    return window_end_date + timedelta(days=1 + rule.offset_days)


def reminder_send_at(rule: ReminderRule, visit: Visit) -> datetime:
    """The instant, in UTC, of `local_time` on the rule's day in the visit's time zone.

    A local time that does not exist that day (inside a spring-forward gap) is read with the
    offset before the gap, i.e. as many minutes after the gap's end as it was into the gap.
    """
    return rule_send_at(rule, visit.window_start_date, visit.window_end_date, visit.timezone)


def rule_send_at(
    rule: ReminderRule, window_start_date: date, window_end_date: date, timezone: str
) -> datetime:
    """`reminder_send_at` from the window's local days and its time zone."""
    day = reminder_day(rule, window_start_date, window_end_date)
    local = datetime.combine(day, local_time_of(rule.local_time), tzinfo=zone(timezone))
    return local.astimezone(UTC)
