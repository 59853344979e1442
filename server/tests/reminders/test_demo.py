"""The demo enrolls a participant whose opening email is due when `metricis demo` runs, whatever
the hour: the next reminder scan writes it, due now, and the dispatcher prints it (console)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.core.security import FieldEncryptor
from app.models.notification import NotificationStatus
from app.models.participant import Participant
from app.services.demo.seed import reminder_demo_zone, seed_demo
from app.services.session_store import MemorySessionStore
from app.services.source_storage import SourceStorage
from tests.reminders.conftest import reminders_of, scan


def test_the_demo_zone_shows_nine_oclock_at_every_hour() -> None:
    for hour in range(24):
        now = datetime(2026, 12, 2, hour, 17, tzinfo=UTC)
        local = now.astimezone(ZoneInfo(reminder_demo_zone(now)))
        assert (local.hour, local.minute) == (9, 17), hour


async def test_the_demo_participant_gets_a_reminder_due_now(
    db_session: AsyncSession, settings: Settings
) -> None:
    summary = await seed_demo(
        db_session,
        settings,
        FieldEncryptor.from_settings(settings),
        MemorySessionStore(),
        SourceStorage.from_settings(settings),
    )
    assert summary.reminder_participant_code is not None
    participant = await db_session.scalar(
        select(Participant).where(Participant.participant_code == summary.reminder_participant_code)
    )
    assert participant is not None

    now = utcnow()
    report = await scan(db_session, settings, now)
    [reminder] = await reminders_of(db_session, str(participant.id))
    assert reminder.status is NotificationStatus.SCHEDULED
    assert now - timedelta(hours=1) <= reminder.send_at <= now
    assert reminder.subject == "Demo: cognition after mild stroke: your Baseline assessment is open"
    assert "{link}" in reminder.body
    assert report.written >= 1

    again = await seed_demo(
        db_session,
        settings,
        FieldEncryptor.from_settings(settings),
        MemorySessionStore(),
        SourceStorage.from_settings(settings),
    )
    if utcnow().hour == now.hour:
        assert again.reminder_participant_code is None
