"""Two scans at once, on a database whose commits are real: every reminder is written once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from app.config import Settings
from app.db.session import create_engine, create_sessionmaker
from app.main import create_app
from app.models.notification import Notification
from app.services.schedules.reminder_scan import scan_visit_reminders
from tests.conftest import lifespan_client
from tests.notifications.conftest import session_on
from tests.reminders.conftest import closing_rule
from tests.schedules.conftest import build_world, create_schedule, email_rule, enroll, event

PARTICIPANTS = 40


async def test_two_scans_at_once_write_each_reminder_once(committed_settings: Settings) -> None:
    settings = committed_settings.model_copy(
        update={"REMINDER_SCAN_BATCH_SIZE": 7, "REMINDER_SCAN_HORIZON_HOURS": 24 * 10.0}
    )
    async with lifespan_client(create_app(settings)) as client:
        async with session_on(settings) as session:
            world = await build_world(client, session)
            await session.commit()
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
        for number in range(PARTICIPANTS):
            await enroll(
                client,
                world,
                f"C{number:03d}",
                enrollment_date="2027-01-11",
                email=f"c{number:03d}@example.org",
            )
    now = datetime(2027, 1, 11, 7, 0, tzinfo=UTC)

    engines = [create_engine(settings) for _ in range(2)]
    try:
        reports = await asyncio.gather(
            *(
                scan_visit_reminders(
                    create_sessionmaker(engine), settings, now, time_budget_seconds=60
                )
                for engine in engines
            )
        )
        # And once more, after both: nothing left.
        last = await scan_visit_reminders(
            create_sessionmaker(engines[0]),
            settings,
            now + timedelta(minutes=1),
            time_budget_seconds=60,
        )
    finally:
        for engine in engines:
            await engine.dispose()

    assert sum(report.written for report in reports) == 2 * PARTICIPANTS
    assert last.visits == 0
    async with session_on(settings) as session:
        rows = await session.scalar(select(func.count()).select_from(Notification))
        keys = await session.scalar(select(func.count(func.distinct(Notification.dedupe_key))))
    assert rows == keys == 2 * PARTICIPANTS
