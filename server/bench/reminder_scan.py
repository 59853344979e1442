"""Reminder scan benchmark (issue: a beat tick over 10,000 participants with 12 visits each finds
and enqueues the due reminders in at most 1 s on PostgreSQL, index-backed).

    python -m bench.reminder_scan [--participants 10000] [--ticks 5] [--database postgres|sqlite]

A fresh database built by the migrations; one study whose schedule has 12 monthly events (a
window of 3 days either side), each with two email rules (09:00 local on opening, 18:00 local
the day before closing); N participants enrolled on days spread over the past year, half in
Europe/Paris and half in America/New_York, each with their 12 visits written in bulk as
enrollment writes them (`reminders_next_at` NULL: not computed yet).

1. The first tick after the migration computes every pending visit (the cold start; reported,
   not held to the second).
2. Then `--ticks` day ticks: each runs 24 hours after the previous one, so it finds the visits
   whose next reminder falls within the new day of the horizon and writes that day's reminders
   (the most a tick ever has to do, since a tick every minute writes a minute's worth).
3. Then `--ticks` minute ticks, a minute apart (what beat does all day).

Each tick is timed as the task runs it: a new engine, the scan in batches, each batch's commit.
Prints the EXPLAIN (ANALYZE, BUFFERS) of the candidate query at the last day tick's time.
Bounded: 127.0.0.1 only; creates and drops its own database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.dialects import postgresql

from app.config import Settings
from app.core.security import FieldEncryptor
from app.db.session import create_engine, create_sessionmaker, run_with_sessions
from app.models.battery import Battery
from app.models.notification import Notification
from app.models.participant import Participant
from app.models.schedule import (
    Schedule,
    ScheduleEvent,
    ScheduleVersion,
    Visit,
    VisitAnchor,
    VisitStatus,
)
from app.models.study import Study, StudyStatus
from app.services.schedules.reminder_scan import (
    ReminderScanReport,
    candidate_visits,
    scan_visit_reminders,
)
from app.services.schedules.timing import status_at, window
from bench.server import METRICIS, SERVER_ROOT
from bench.submit import create_database, drop_database

EVENTS = 12
ZONES = ("Europe/Paris", "America/New_York")
# The bench's clock: a fixed instant, so every run plans the same reminders.
T0 = datetime(2027, 3, 1, 6, 0, tzinfo=UTC)


def _rule(anchor: str, offset_days: int, local_time: str) -> dict[str, Any]:
    return {
        "channel": "email",
        "anchor": anchor,
        "offset_days": offset_days,
        "local_time": local_time,
        "templates": {
            "en": {
                "subject": "{study_name}: {visit_label}",
                "body": "Hello {participant_code}, until {window_closes}: {link}",
            }
        },
    }


RULES = [_rule("window_open", 0, "09:00"), _rule("window_close", -1, "18:00")]


async def prepare(settings: Settings, participants: int) -> int:
    """The study, its schedule and the participants' visits; how many visits."""
    engine = create_engine(settings)
    encryptor = FieldEncryptor.from_settings(settings)
    now = T0
    try:
        async with create_sessionmaker(engine)() as session:
            study = Study(
                id=uuid.uuid4(),
                code="BENCH-REMINDERS",
                name="Reminder bench",
                status=StudyStatus.ACTIVE,
                supported_languages=["en"],
            )
            battery = Battery(id=uuid.uuid4(), study_id=study.id, name="B", current_version=1)
            schedule = Schedule(id=uuid.uuid4(), study_id=study.id, current_version=1)
            version = ScheduleVersion(
                id=uuid.uuid4(), schedule_id=schedule.id, version=1, name="Monthly", created_at=now
            )
            events = [
                ScheduleEvent(
                    id=uuid.uuid4(),
                    schedule_version_id=version.id,
                    position=number,
                    key=f"m{number:02d}",
                    label=f"Month {number}",
                    anchor=VisitAnchor.ENROLLMENT_DATE,
                    offset_days=30 * number,
                    window_before_days=3,
                    window_after_days=3,
                    battery_id=battery.id,
                    repeat_count=1,
                    reminders=RULES,
                )
                for number in range(EVENTS)
            ]
            session.add(study)
            await session.flush()
            session.add_all([battery, schedule])
            await session.flush()
            session.add(version)
            await session.flush()
            session.add_all(events)
            await session.commit()

            email = encryptor.encrypt("bench@example.org")
            people: list[dict[str, Any]] = []
            visits: list[dict[str, Any]] = []
            for index in range(participants):
                zone = ZONES[index % 2]
                enrolled = (T0 - timedelta(days=index % 365)).date()
                pid = uuid.uuid4()
                people.append(
                    {
                        "id": pid,
                        "study_id": study.id,
                        "participant_code": f"B{index:05d}",
                        "email_encrypted": email,
                        "enrollment_date": enrolled,
                        "language": "en",
                        "timezone": zone,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                for event in events:
                    visits.append(_visit(study.id, pid, schedule.id, event, enrolled, zone))
            for start in range(0, len(people), 5000):
                await session.execute(insert(Participant), people[start : start + 5000])
            for start in range(0, len(visits), 5000):
                await session.execute(insert(Visit), visits[start : start + 5000])
            await session.commit()
            if settings.DATABASE_URL.startswith("postgresql"):
                await session.execute(text("ANALYZE"))
                await session.commit()
            return len(visits)
    finally:
        await engine.dispose()


def _visit(
    study_id: uuid.UUID,
    participant_id: uuid.UUID,
    schedule_id: uuid.UUID,
    event: ScheduleEvent,
    enrolled: date,
    zone: str,
) -> dict[str, Any]:
    timing = window(enrolled + timedelta(days=event.offset_days), 3, 3, zone)
    return {
        "id": uuid.uuid4(),
        "study_id": study_id,
        "participant_id": participant_id,
        "schedule_id": schedule_id,
        "schedule_version": 1,
        "schedule_event_id": event.id,
        "event_key": event.key,
        "occurrence": 1,
        "label": event.label,
        "battery_id": event.battery_id,
        "anchor": VisitAnchor.ENROLLMENT_DATE,
        "anchor_date": enrolled,
        "timezone": zone,
        "due_date": timing.due_date,
        "window_start_date": timing.start_date,
        "window_end_date": timing.end_date,
        "due_at": timing.due_at,
        "window_opens_at": timing.opens_at,
        "window_closes_at": timing.closes_at,
        # As the status scan leaves them at T0.
        "status": status_at(VisitStatus.SCHEDULED, timing.opens_at, timing.closes_at, T0),
        "created_at": T0,
        "updated_at": T0,
    }


def tick(settings: Settings, now: datetime) -> tuple[float, ReminderScanReport]:
    """One tick as the task runs it (a new engine, batches committed), timed."""
    started = time.perf_counter()
    report = run_with_sessions(
        settings,
        lambda sessions: scan_visit_reminders(sessions, settings, now, time_budget_seconds=120),
    )
    return time.perf_counter() - started, report


async def explain(settings: Settings, now: datetime) -> str:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            horizon = now + timedelta(hours=settings.REMINDER_SCAN_HORIZON_HOURS)
            statement = candidate_visits(now, horizon, settings.REMINDER_SCAN_BATCH_SIZE)
            compiled = statement.compile(
                dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
                compile_kwargs={"literal_binds": True},
            )
            rows = await connection.execute(text(f"EXPLAIN (ANALYZE, BUFFERS) {compiled}"))
            plan = "\n".join(row[0] for row in rows)
            await connection.rollback()
            return plan
    finally:
        await engine.dispose()


async def analyze(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("VACUUM ANALYZE visits"))
    finally:
        await engine.dispose()


async def count_notifications(settings: Settings) -> int:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            return int(
                (await connection.execute(select(func.count()).select_from(Notification))).scalar()
                or 0
            )
    finally:
        await engine.dispose()


def _summary(name: str, seconds: list[float], written: list[int]) -> None:
    print(
        f"{name}: median {1000 * statistics.median(seconds):.0f} ms, "
        f"min {1000 * min(seconds):.0f} ms, max {1000 * max(seconds):.0f} ms; "
        f"reminders written per tick: {written}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--participants", type=int, default=10_000)
    parser.add_argument("--ticks", type=int, default=5)
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    args = parser.parse_args()
    if not 1 <= args.participants <= 50_000 or not 1 <= args.ticks <= 20:
        raise SystemExit("--participants takes 1 to 50000, --ticks 1 to 20")
    database = f"metricis_bench_reminders_{os.getpid()}"
    with tempfile.TemporaryDirectory() as scratch:
        if args.database == "postgres":
            asyncio.run(create_database(database))
            url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
        else:
            url = f"sqlite+aiosqlite:///{Path(scratch) / 'bench.db'}"
        env = {
            "DATABASE_URL": url,
            "STORAGE_DIR": str(Path(scratch) / "storage"),
            "ENVIRONMENT": "test",
            "LOG_LEVEL": "warning",
        }
        settings = Settings.model_validate(env)
        try:
            subprocess.run(
                [METRICIS, "db", "upgrade"],
                cwd=SERVER_ROOT,
                env={**os.environ, **env},
                check=True,
                capture_output=True,
            )
            started = time.perf_counter()
            visits = asyncio.run(prepare(settings, args.participants))
            print(
                f"{args.participants} participants, {visits} visits, {len(RULES)} rules per "
                f"visit, database {args.database}, Python {sys.version.split()[0]}; "
                f"written in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
            cold, report = tick(settings, T0 - timedelta(days=1))
            print(
                f"cold start (every visit computed once): {1000 * cold:.0f} ms, "
                f"{report.visits} visits in {report.batches} batches, "
                f"{report.written} reminders written",
                flush=True,
            )
            plan = ""
            if args.database == "postgres":
                # What autovacuum does after the cold start rewrote every pending visit: the
                # planner learns that few are left NULL, the index sheds the old versions.
                asyncio.run(analyze(settings))
            day_seconds: list[float] = []
            day_written: list[int] = []
            now = T0 - timedelta(days=1)
            for number in range(args.ticks):
                now += timedelta(days=1)
                if args.database == "postgres" and number == args.ticks - 1:
                    plan = asyncio.run(explain(settings, now))
                seconds, report = tick(settings, now)
                day_seconds.append(seconds)
                day_written.append(report.written)
            _summary("day ticks (24 h apart)", day_seconds, day_written)
            minute_seconds: list[float] = []
            minute_written: list[int] = []
            for _ in range(args.ticks):
                now += timedelta(minutes=1)
                seconds, report = tick(settings, now)
                minute_seconds.append(seconds)
                minute_written.append(report.written)
            _summary("minute ticks", minute_seconds, minute_written)
            print(f"notifications written in all: {asyncio.run(count_notifications(settings))}")
            if args.database == "postgres":
                print("EXPLAIN (ANALYZE, BUFFERS) of the candidate query at the last day tick:")
                print(plan)
        finally:
            if args.database == "postgres":
                asyncio.run(drop_database(database))


if __name__ == "__main__":
    main()
