"""The reminder scan: turns the reminder rules of visits into notifications (docs/reminders.md).

Run by celery beat (`app.workers.tasks.scan_visit_reminders`). Each visit keeps
`reminders_next_at`, the send time of its earliest reminder not yet written; the scan asks only
for pending visits whose `reminders_next_at` is NULL (never computed: a new visit, or one whose
window or rules changed) or falls within the horizon, through a partial index, so a tick costs
what is due, not what exists. For each visit found it writes the reminders due within the
horizon as notifications and moves `reminders_next_at` to the next one (or NO_MORE_REMINDERS).

Exactly one notification per (visit, rule, round): the dedupe key names them, and the insert is
`ON CONFLICT DO NOTHING`, so a scan that runs twice, or two at once, writes each once. On
PostgreSQL the visits are also taken `FOR UPDATE SKIP LOCKED`, so two scans at once share the
work instead of doing it twice. `reminder_round` grows when a change (a reschedule, a schedule
change) cancels a visit's pending reminders, so the new window gets reminders of its own.

The stored text has every placeholder filled in except `{link}`: a sign-in link is a secret,
issued when the message is sent (the dispatcher), so it is fresh and never stored.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.core.events import emit_once
from app.core.logging import get_logger
from app.db.session import transaction_scope
from app.models.notification import (
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationOptOut,
    NotificationStatus,
)
from app.models.participant import Participant, ParticipantStatus
from app.models.schedule import ScheduleEvent, ScheduleVersion, Visit, VisitStatus
from app.models.study import Study
from app.schemas.schedules import QuietHours as QuietHoursRule
from app.schemas.schedules import ReminderRule, local_time_of
from app.services.notifications.messages import LINK_PLACEHOLDER
from app.services.notifications.quiet_hours import apply_quiet_hours
from app.services.notifications.scheduling import NOTIFICATIONS_DUE
from app.services.schedules.reminders import rule_send_at
from app.services.schedules.timing import zone

logger = get_logger(__name__)

# `reminders_next_at` of a visit with no reminder left to write.
NO_MORE_REMINDERS = datetime(9999, 1, 1, tzinfo=UTC)

# `{access_instructions}`: how to sign in without a link, in the participant's language.
ACCESS_INSTRUCTIONS = {
    "en": "Open the study app and sign in with the study code {study_code}, your participant "
    "ID {participant_code} and the access code you were given.",
    "fr": "Ouvrez l'application de l'étude et connectez-vous avec le code d'étude {study_code}, "
    "votre identifiant {participant_code} et le code d'accès qui vous a été remis.",
    "de": "Öffnen Sie die Studien-App und melden Sie sich mit dem Studiencode {study_code}, "
    "Ihrer Teilnehmer-ID {participant_code} und Ihrem Zugangscode an.",
    "es": "Abra la aplicación del estudio e inicie sesión con el código del estudio "
    "{study_code}, su identificador {participant_code} y el código de acceso que recibió.",
}


@dataclass
class ReminderScanReport:
    visits: int = 0  # visits looked at
    written: int = 0  # notifications written
    already_written: int = 0  # found written by an earlier or a concurrent scan
    too_late: int = 0  # due longer ago than REMINDER_MAX_LATENESS_HOURS: skipped
    unsubscribed: int = 0  # the participant opted out of the channel: skipped
    no_contact: int = 0  # no email address or phone number: skipped
    batches: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def rule_key(rule: Mapping[str, Any]) -> str:
    """A short digest of a stored rule: the same rule has the same key in every version."""
    canonical = json.dumps(rule, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def dedupe_key(visit_id: uuid.UUID, reminder_round: int, key_of_rule: str) -> str:
    """One notification per visit, round of its reminders, and rule."""
    return f"reminder:{visit_id}:{reminder_round}:{key_of_rule}"


@dataclass(frozen=True, slots=True)
class _Context:
    """What the scan reads beside the visits, for one batch."""

    events: dict[uuid.UUID, ScheduleEvent]
    quiet_hours: dict[uuid.UUID, QuietHoursRule | None]  # by schedule version id
    participants: dict[uuid.UUID, Any]  # rows of _PARTICIPANT_COLUMNS
    studies: dict[uuid.UUID, Study]
    opted_out: set[tuple[uuid.UUID, NotificationChannel]]
    parsed: dict[uuid.UUID, list[tuple[ReminderRule, str]]] = field(default_factory=dict)

    def rules(self, event: ScheduleEvent) -> list[tuple[ReminderRule, str]]:
        """The event's rules, typed, with their keys; parsed once per batch."""
        found = self.parsed.get(event.id)
        if found is None:
            found = [
                (ReminderRule.model_validate(stored), rule_key(stored))
                for stored in event.reminders
            ]
            self.parsed[event.id] = found
        return found


def render(text: str, values: Mapping[str, str]) -> str:
    """Fill the placeholders in (validated when the rule was written); `{link}` stays."""
    return text.format_map({**values, "link": LINK_PLACEHOLDER})


def placeholder_values(visit: Any, participant: Any, study: Study) -> dict[str, str]:
    """The values of the placeholders for a visit (a `Visit` or a row of _VISIT_COLUMNS) and its
    participant (a `Participant` or a row of _PARTICIPANT_COLUMNS)."""
    language = participant.language.split("-")[0].lower()
    instructions = ACCESS_INSTRUCTIONS.get(language, ACCESS_INSTRUCTIONS["en"])
    return {
        "participant_code": participant.participant_code,
        "access_instructions": instructions.format(
            study_code=study.code, participant_code=participant.participant_code
        ),
        "study_name": study.name,
        "visit_label": visit.label,
        "due_date": visit.due_date.isoformat(),
        "window_opens": visit.window_start_date.isoformat(),
        "window_closes": visit.window_end_date.isoformat(),
    }


def template_language(rule: ReminderRule, participant: Any, study: Study) -> str:
    """The participant's language when the rule has a template in it, else the study's first
    (which every rule has: checked when the schedule is written), else the rule's first."""
    language: str = participant.language
    for candidate in (language, language.split("-")[0]):
        if candidate in rule.templates:
            return candidate
    for candidate in study.supported_languages:
        if candidate in rule.templates:
            return candidate
    return next(iter(rule.templates))


def _insert(session: AsyncSession) -> Any:
    # The table, not the mapped class: the rows are complete, and the ORM's bulk path costs
    # more than the statement.
    table = cast(Table, Notification.__table__)
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return (
        dialect.insert(table)
        .on_conflict_do_nothing(index_elements=[table.c.dedupe_key])
        .returning(table.c.id)
    )


# PostgreSQL: every visit's cursor in one statement, instead of one UPDATE per visit.
_NEXT_AT_POSTGRES = text(
    "UPDATE visits SET reminders_next_at = cursor.next_at "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:next_ats AS timestamptz[])) AS cursor(id, next_at) "
    "WHERE visits.id = cursor.id"
)


_NEXT_AT = (
    update(cast(Table, Visit.__table__))
    .where(cast(Table, Visit.__table__).c.id == bindparam("b_id"))
    .values(reminders_next_at=bindparam("b_next_at"))
)


# What the scan reads of a visit and of its participant: columns, not ORM objects (a tick may
# read thousands).
_VISIT_COLUMNS = (
    Visit.id,
    Visit.study_id,
    Visit.participant_id,
    Visit.schedule_event_id,
    Visit.timezone,
    Visit.label,
    Visit.due_date,
    Visit.window_start_date,
    Visit.window_end_date,
    Visit.reminder_round,
    Visit.reminders_next_at,
)
_PARTICIPANT_COLUMNS = (
    Participant.id,
    Participant.status,
    Participant.language,
    Participant.participant_code,
    Participant.email_encrypted.is_not(None).label("has_email"),
    Participant.phone_encrypted.is_not(None).label("has_phone"),
)


def candidate_visits(now: datetime, horizon: datetime, limit: int) -> Any:
    """Pending visits whose next reminder is due within the horizon (or not computed yet), in
    that order: a range of the partial index `ix_visits_reminders_next_at`."""
    return (
        select(*_VISIT_COLUMNS)
        .where(Visit.status.in_((VisitStatus.SCHEDULED, VisitStatus.OPEN)))
        .where(Visit.reminders_next_at <= horizon)
        .where(Visit.window_closes_at > now)
        .order_by(Visit.reminders_next_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


async def _context(session: AsyncSession, visits: list[Any]) -> _Context:
    event_ids = {visit.schedule_event_id for visit in visits}
    events = {
        event.id: event
        for event in await session.scalars(
            select(ScheduleEvent).where(ScheduleEvent.id.in_(event_ids))
        )
    }
    version_ids = {event.schedule_version_id for event in events.values()}
    quiet_hours = {
        version_id: (QuietHoursRule.model_validate(stored) if stored is not None else None)
        for version_id, stored in (
            await session.execute(
                select(ScheduleVersion.id, ScheduleVersion.reminder_quiet_hours).where(
                    ScheduleVersion.id.in_(version_ids)
                )
            )
        ).all()
    }
    participant_ids = {visit.participant_id for visit in visits}
    participants = {
        participant.id: participant
        for participant in await session.execute(
            select(*_PARTICIPANT_COLUMNS).where(Participant.id.in_(participant_ids))
        )
    }
    study_ids = {visit.study_id for visit in visits}
    studies = {
        study.id: study
        for study in await session.scalars(select(Study).where(Study.id.in_(study_ids)))
    }
    opted_out = {
        (participant_id, channel)
        for participant_id, channel in (
            await session.execute(
                select(NotificationOptOut.participant_id, NotificationOptOut.channel).where(
                    NotificationOptOut.participant_id.in_(participant_ids)
                )
            )
        ).all()
    }
    return _Context(events, quiet_hours, participants, studies, opted_out)


def _has_contact(participant: Any, channel: NotificationChannel) -> bool:
    if channel is NotificationChannel.EMAIL:
        return bool(participant.has_email)
    return bool(participant.has_phone)


async def scan_batch(
    session: AsyncSession, settings: Settings, now: datetime, report: ReminderScanReport
) -> bool:
    """Plan the reminders of one batch of visits (in the caller's transaction); whether any
    visit was found."""
    horizon = now + timedelta(hours=settings.REMINDER_SCAN_HORIZON_HOURS)
    oldest = now - timedelta(hours=settings.REMINDER_MAX_LATENESS_HOURS)
    candidates = candidate_visits(now, horizon, settings.REMINDER_SCAN_BATCH_SIZE)
    visits = list((await session.execute(candidates)).all())
    if not visits:
        return False
    report.batches += 1
    report.visits += len(visits)
    context = await _context(session, visits)
    rows: list[dict[str, Any]] = []
    next_at: list[dict[str, Any]] = []
    for visit in visits:
        event = context.events[visit.schedule_event_id]
        participant = context.participants[visit.participant_id]
        study = context.studies[visit.study_id]
        quiet = context.quiet_hours.get(event.schedule_version_id)
        earliest_later = NO_MORE_REMINDERS
        values: dict[str, str] | None = None
        for rule, key in context.rules(event):
            send_at = rule_send_at(
                rule, visit.window_start_date, visit.window_end_date, visit.timezone
            )
            if send_at < visit.reminders_next_at:
                continue  # before the visit's cursor: an earlier tick wrote or skipped it
            if send_at > horizon:
                earliest_later = min(earliest_later, send_at)
                continue
            if send_at < oldest:
                report.too_late += 1
                continue
            channel = NotificationChannel(rule.channel.value)
            if participant.status is ParticipantStatus.WITHDRAWN:
                continue
            if (participant.id, channel) in context.opted_out:
                report.unsubscribed += 1
                continue
            if not _has_contact(participant, channel):
                report.no_contact += 1
                continue
            if quiet is not None:
                send_at = apply_quiet_hours(
                    send_at,
                    zone(visit.timezone),
                    local_time_of(quiet.start),
                    local_time_of(quiet.end),
                )
            if values is None:
                values = placeholder_values(visit, participant, study)
            language = template_language(rule, participant, study)
            template = rule.templates[language]
            rows.append(
                {
                    "id": uuid.uuid4(),
                    "study_id": visit.study_id,
                    "participant_id": participant.id,
                    "visit_id": visit.id,
                    "kind": NotificationKind.VISIT_REMINDER,
                    "channel": channel,
                    "status": NotificationStatus.SCHEDULED,
                    "send_at": send_at,
                    "due_at": send_at,
                    "language": language,
                    "subject": (
                        render(template.subject, values).strip()[:255]
                        if template.subject is not None
                        else None
                    ),
                    "body": render(template.body, values),
                    "dedupe_key": dedupe_key(visit.id, visit.reminder_round, key),
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        next_at.append({"b_id": visit.id, "b_next_at": earliest_later})
    if rows:
        inserted = (await session.execute(_insert(session), rows)).scalars().all()
        report.written += len(inserted)
        report.already_written += len(rows) - len(inserted)
        if inserted and any(row["send_at"] <= now for row in rows):
            emit_once(session, NOTIFICATIONS_DUE, {})
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        await connection.execute(
            _NEXT_AT_POSTGRES,
            {
                "ids": [item["b_id"] for item in next_at],
                "next_ats": [item["b_next_at"] for item in next_at],
            },
        )
    else:
        await connection.execute(_NEXT_AT, next_at)
    return True


async def scan_visit_reminders(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    now: datetime,
    *,
    time_budget_seconds: float,
) -> ReminderScanReport:
    """Plan every reminder due within the horizon, a batch per transaction, until nothing is
    left or the time budget is spent (the next tick goes on)."""
    report = ReminderScanReport()
    deadline = time.monotonic() + time_budget_seconds
    while time.monotonic() < deadline:
        async with sessionmaker() as session, transaction_scope(session):
            found = await scan_batch(session, settings, now, report)
        if not found:
            break
    if report.written or report.too_late:
        logger.info("visit_reminders_planned", **report.as_dict())
    return report
