"""Schedules, their events and reminder rules, and visits (docs/schedules.md).

`ReminderRule` and `QuietHours` are both the request shape and the stored form: a rule is
validated here (channel, anchor, time of day, templates and their placeholders) and by the
schedules service against the study (languages, the event's window, the quiet hours), then kept
as its JSON in `schedule_events.reminders`. The reminders step reads it back with
`ReminderRule.model_validate`.
"""

from __future__ import annotations

import string
import uuid
from datetime import date, datetime, time
from enum import StrEnum
from typing import Annotated, Self
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from app.models.schedule import Visit, VisitAnchor, VisitCancellation, VisitStatus

# ---------------------------------------------------------------------------------------------
# Reminder rules

LocalTime = Annotated[
    str,
    StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$"),
    Field(description="A local time of day, HH:MM (24 h)", examples=["09:00"]),
]

LanguageCode = Annotated[str, StringConstraints(min_length=2, max_length=16)]

# What a template may say about the visit; the reminders step fills them in.
REMINDER_PLACEHOLDERS: frozenset[str] = frozenset(
    {
        "participant_code",
        "link",  # the participant's magic link (email) or short link
        "access_instructions",  # how to sign in when there is no link (access code, study code)
        "study_name",
        "visit_label",
        "due_date",
        "window_opens",
        "window_closes",
    }
)
EMAIL_BODY_MAX_LENGTH = 5000
SMS_BODY_MAX_LENGTH = 480  # three SMS segments before the placeholders are filled in
MAX_REMINDERS_PER_EVENT = 10
# A reminder is sent at most this many days before its window opens.
MAX_DAYS_BEFORE_WINDOW = 60


class ReminderChannel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


class ReminderAnchor(StrEnum):
    """Day 0 of a reminder: the window's first day, or the day its closing midnight starts."""

    WINDOW_OPEN = "window_open"
    WINDOW_CLOSE = "window_close"


def local_time_of(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _placeholder_errors(text: str) -> list[str]:
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        return [f"{exc} (write a literal brace as '{{{{' or '}}}}')"]
    problems: list[str] = []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in REMINDER_PLACEHOLDERS:
            problems.append(
                f"unknown placeholder {{{name}}}; use one of "
                + ", ".join(f"{{{p}}}" for p in sorted(REMINDER_PLACEHOLDERS))
            )
        elif spec or conversion:
            problems.append(f"placeholder {{{name}}} takes no format or conversion")
    return problems


class ReminderTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str | None = Field(
        default=None, min_length=1, max_length=200, description="Email only; required there"
    )
    body: str = Field(
        min_length=1,
        max_length=EMAIL_BODY_MAX_LENGTH,
        description="Text with placeholders: "
        + ", ".join(f"`{{{p}}}`" for p in sorted(REMINDER_PLACEHOLDERS)),
    )

    @model_validator(mode="after")
    def _known_placeholders(self) -> Self:
        problems = _placeholder_errors(self.body)
        if self.subject is not None:
            problems += [f"subject: {p}" for p in _placeholder_errors(self.subject)]
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ReminderRule(BaseModel):
    """When and how to remind a participant of one event's visits.

    The reminder goes out at `local_time` in the participant's time zone on day `offset_days`
    counted from the anchor: for `window_open` day 0 is the window's first day; for
    `window_close` day 0 is the day starting at the window's closing midnight, so -1 is the
    window's last day ("1 day before close").
    """

    model_config = ConfigDict(extra="forbid")

    channel: ReminderChannel
    anchor: ReminderAnchor
    offset_days: int = Field(default=0, ge=-400, le=400)
    local_time: LocalTime
    templates: dict[LanguageCode, ReminderTemplate] = Field(
        min_length=1,
        max_length=20,
        description="Per language of the study; the study's first language is required",
    )

    @model_validator(mode="after")
    def _channel_rules(self) -> Self:
        problems: list[str] = []
        for language, template in self.templates.items():
            if self.channel is ReminderChannel.EMAIL and template.subject is None:
                problems.append(f"templates.{language}: an email needs a subject")
            if self.channel is ReminderChannel.SMS:
                if template.subject is not None:
                    problems.append(f"templates.{language}: an SMS has no subject")
                if len(template.body) > SMS_BODY_MAX_LENGTH:
                    problems.append(
                        f"templates.{language}: an SMS body has at most "
                        f"{SMS_BODY_MAX_LENGTH} characters"
                    )
        if self.anchor is ReminderAnchor.WINDOW_CLOSE and self.offset_days > -1:
            problems.append(
                "offset_days: day 0 of window_close is after the window has closed; "
                "use -1 for its last day"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class QuietHours(BaseModel):
    """No reminder is sent between `start` and `end`, in each participant's local time; the span
    may cross midnight (21:00 to 08:00)."""

    model_config = ConfigDict(extra="forbid")

    start: LocalTime
    end: LocalTime

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.start == self.end:
            raise ValueError("start and end are the same time")
        return self

    def contains(self, moment: time) -> bool:
        start, end = local_time_of(self.start), local_time_of(self.end)
        if start < end:
            return start <= moment < end
        return moment >= start or moment < end


# ---------------------------------------------------------------------------------------------
# Schedules

EVENT_KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
MAX_EVENTS = 100
# Visits one participant can have under one schedule version, repetitions included.
MAX_OCCURRENCES = 1000


class RepeatRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    every_days: int = Field(ge=1, le=3650, description="Days between two occurrences")
    count: int = Field(ge=2, le=MAX_OCCURRENCES, description="Occurrences in all, the first too")


class ScheduleEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(
        pattern=EVENT_KEY_PATTERN,
        examples=["baseline"],
        description="Stable across versions: visits follow their event by this key",
    )
    label: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)
    ] = Field(examples=["Baseline"])
    anchor: VisitAnchor = Field(
        default=VisitAnchor.ENROLLMENT_DATE,
        description="`enrollment_date`, or the participant's own `anchor_date`",
    )
    offset_days: int = Field(ge=-3650, le=3650, description="The due day, counted from the anchor")
    window_before_days: int = Field(default=0, ge=0, le=365)
    window_after_days: int = Field(default=0, ge=0, le=365)
    battery_id: uuid.UUID
    repeat: RepeatRule | None = None
    reminders: list[ReminderRule] = Field(default_factory=list, max_length=MAX_REMINDERS_PER_EVENT)


_EVENTS_DESCRIPTION = f"1 to {MAX_EVENTS} events; problems are reported as `events.<index>.<field>`"


class ScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    study_id: uuid.UUID
    name: str = Field(default="Visit schedule", min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=10_000)
    events: list[ScheduleEventIn] = Field(
        min_length=1, max_length=MAX_EVENTS, description=_EVENTS_DESCRIPTION
    )
    reminder_quiet_hours: QuietHours | None = None


class ScheduleUpdate(BaseModel):
    """Any subset; `events` replaces the whole list. Each effective change is a new version and
    regenerates the visits that have not started (docs/schedules.md)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=10_000)
    events: list[ScheduleEventIn] | None = Field(
        default=None, min_length=1, max_length=MAX_EVENTS, description=_EVENTS_DESCRIPTION
    )
    reminder_quiet_hours: QuietHours | None = None
    reason: str | None = Field(default=None, max_length=1000, description="For the audit trail")


class ScheduleEventRead(BaseModel):
    key: str
    label: str
    anchor: VisitAnchor
    offset_days: int
    window_before_days: int
    window_after_days: int
    battery_id: uuid.UUID
    repeat: RepeatRule | None
    reminders: list[ReminderRule]


class VisitChanges(BaseModel):
    """What a write did to the visits of the study's participants."""

    participants: int = Field(description="Participants whose visits were looked at")
    created: int
    updated: int
    cancelled: int


class ScheduleRead(BaseModel):
    """A schedule with the content of its current version."""

    id: uuid.UUID
    study_id: uuid.UUID
    name: str
    description: str | None
    version: int = Field(description="The current version")
    events: list[ScheduleEventRead]
    reminder_quiet_hours: QuietHours | None
    created_at: datetime
    updated_at: datetime
    version_created_at: datetime
    version_created_by: uuid.UUID | None
    visits: VisitChanges | None = Field(
        default=None, description="On a create or an update: what it did to the visits"
    )


class ScheduleVersionRead(BaseModel):
    schedule_id: uuid.UUID
    version: int
    is_current: bool
    name: str
    description: str | None
    events: list[ScheduleEventRead]
    reminder_quiet_hours: QuietHours | None
    created_at: datetime
    created_by: uuid.UUID | None


# ---------------------------------------------------------------------------------------------
# Visits


def _local(moment: datetime, zone: str) -> datetime:
    return moment.astimezone(ZoneInfo(zone))


class VisitRead(BaseModel):
    """One visit. Dates are the participant's local calendar days; `due_at`, `window_start` and
    `window_end` are the instants they begin and end at, written with the participant's UTC
    offset at that moment."""

    id: uuid.UUID
    study_id: uuid.UUID
    participant_id: uuid.UUID
    participant_code: str
    site_id: uuid.UUID | None
    schedule_id: uuid.UUID
    schedule_version: int
    event_key: str
    occurrence: int = Field(description="1 for the first; more for a repeating event")
    label: str
    battery_id: uuid.UUID
    anchor: VisitAnchor
    anchor_date: date
    timezone: str
    due_date: date
    window_start_date: date
    window_end_date: date = Field(description="The last day of the window, included")
    due_at: datetime
    window_start: datetime
    window_end: datetime = Field(
        description="The window closes here (midnight ending its last day)"
    )
    status: VisitStatus = Field(description="As of the request, whether or not the scan has run")
    session_id: uuid.UUID | None = Field(description="The session that completed the visit")
    completed_at: datetime | None
    cancelled_at: datetime | None
    cancellation_reason: VisitCancellation | None
    rescheduled_at: datetime | None
    reschedule_reason: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def build(
        cls,
        visit: Visit,
        *,
        participant_code: str,
        site_id: uuid.UUID | None,
        status: VisitStatus,
    ) -> VisitRead:
        return cls(
            id=visit.id,
            study_id=visit.study_id,
            participant_id=visit.participant_id,
            participant_code=participant_code,
            site_id=site_id,
            schedule_id=visit.schedule_id,
            schedule_version=visit.schedule_version,
            event_key=visit.event_key,
            occurrence=visit.occurrence,
            label=visit.label,
            battery_id=visit.battery_id,
            anchor=visit.anchor,
            anchor_date=visit.anchor_date,
            timezone=visit.timezone,
            due_date=visit.due_date,
            window_start_date=visit.window_start_date,
            window_end_date=visit.window_end_date,
            due_at=_local(visit.due_at, visit.timezone),
            window_start=_local(visit.window_opens_at, visit.timezone),
            window_end=_local(visit.window_closes_at, visit.timezone),
            status=status,
            session_id=visit.completed_session_id,
            completed_at=visit.completed_at,
            cancelled_at=visit.cancelled_at,
            cancellation_reason=visit.cancellation_reason,
            rescheduled_at=visit.rescheduled_at,
            reschedule_reason=visit.reschedule_reason,
            created_at=visit.created_at,
            updated_at=visit.updated_at,
        )


class VisitReschedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    due_date: date = Field(description="The new due day, in the participant's calendar")
    window_before_days: int | None = Field(
        default=None, ge=0, le=365, description="Default: the visit's current window"
    )
    window_after_days: int | None = Field(default=None, ge=0, le=365)
    reason: str = Field(min_length=1, max_length=1000, description="Why; kept in the audit trail")


class ManifestVisit(BaseModel):
    """A visit as the participant's device needs it offline: what to run and when."""

    id: uuid.UUID
    event_key: str
    occurrence: int
    label: str
    battery_id: uuid.UUID
    status: VisitStatus
    timezone: str
    due_date: date
    window_start_date: date
    window_end_date: date
    due_at: datetime
    window_start: datetime
    window_end: datetime

    @classmethod
    def build(cls, visit: Visit, status: VisitStatus) -> ManifestVisit:
        return cls(
            id=visit.id,
            event_key=visit.event_key,
            occurrence=visit.occurrence,
            label=visit.label,
            battery_id=visit.battery_id,
            status=status,
            timezone=visit.timezone,
            due_date=visit.due_date,
            window_start_date=visit.window_start_date,
            window_end_date=visit.window_end_date,
            due_at=_local(visit.due_at, visit.timezone),
            window_start=_local(visit.window_opens_at, visit.timezone),
            window_end=_local(visit.window_closes_at, visit.timezone),
        )
