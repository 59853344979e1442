"""Statuses as the clock passes: the scan through the service, through the beat task function
and through a real worker; and reads that are right before the scan has run."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings, get_settings
from app.core.clock import utcnow
from app.models.audit import AuditEvent
from app.models.schedule import (
    Schedule,
    ScheduleEvent,
    ScheduleVersion,
    Visit,
    VisitAnchor,
    VisitStatus,
)
from app.services.audit import AuditContext
from app.services.schedules.timing import window
from app.services.schedules.transitions import advance_visit_statuses
from app.workers import tasks
from app.workers.celery_app import create_celery_app
from tests import factories
from tests.conftest import make_settings
from tests.schedules.conftest import (
    World,
    audit_events,
    by_key,
    create_schedule,
    enroll,
    participant_token,
    visits_of,
)
from tests.workers.test_workers import _environment, _start, _stop


async def _stored(db_session: AsyncSession, visit_id: str) -> VisitStatus:
    status = await db_session.scalar(select(Visit.status).where(Visit.id == uuid.UUID(visit_id)))
    assert status is not None
    return status


async def test_the_scan_stores_open_and_missed_once(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    await create_schedule(client, world)
    participant = await enroll(client, world, "P001")
    visits = by_key(await visits_of(client, world.coordinator, participant["id"]))
    assert await _stored(db_session, visits["baseline#1"]["id"]) == VisitStatus.OPEN
    assert await _stored(db_session, visits["week-4#1"]["id"]) == VisitStatus.SCHEDULED

    # Thirty days on: the baseline window (days 0-7) has closed, week 4's (25-31) is open.
    later = utcnow() + timedelta(days=30)
    advanced = await advance_visit_statuses(db_session, AuditContext.system(), later)
    await db_session.commit()
    assert advanced.missed == [uuid.UUID(visits["baseline#1"]["id"])]
    assert advanced.opened == [uuid.UUID(visits["week-4#1"]["id"])]
    assert await _stored(db_session, visits["baseline#1"]["id"]) == VisitStatus.MISSED
    assert await _stored(db_session, visits["week-4#1"]["id"]) == VisitStatus.OPEN
    assert await _stored(db_session, visits["month-6#1"]["id"]) == VisitStatus.SCHEDULED
    [event] = await audit_events(db_session, "visits.status_advanced", study_id=world.study_id)
    assert event.actor_type == "system"
    assert event.after is not None
    assert event.after["opened"] == [visits["week-4#1"]["id"]]
    assert event.after["missed"] == [visits["baseline#1"]["id"]]

    # Again at the same instant: nothing left to move, nothing recorded.
    again = await advance_visit_statuses(db_session, AuditContext.system(), later)
    assert (again.opened, again.missed) == ([], [])
    assert len(await audit_events(db_session, "visits.status_advanced")) == 1

    # Completed and cancelled visits are never moved by the clock.
    withdrawn = await client.post(
        f"/api/participants/{participant['id']}/withdraw",
        headers=world.coordinator,
        json={"reason": "moved away"},
    )
    assert withdrawn.status_code == 200
    far = utcnow() + timedelta(days=400)
    last = await advance_visit_statuses(db_session, AuditContext.system(), far)
    assert (last.opened, last.missed) == ([], [])
    for visit in visits.values():
        assert await _stored(db_session, visit["id"]) == VisitStatus.CANCELLED


async def test_reads_are_right_before_the_scan_runs(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings, world: World
) -> None:
    """A window that opened (or closed) since the last scan: every read already says so."""
    await create_schedule(client, world)
    participant = await enroll(client, world, "P001")
    visits = by_key(await visits_of(client, world.coordinator, participant["id"]))
    week_id = uuid.UUID(visits["week-4#1"]["id"])
    month_id = uuid.UUID(visits["month-6#1"]["id"])
    now = utcnow()
    # As if time had passed since these rows were stored "scheduled": week 4 opened a minute
    # ago, month 6 closed a minute ago.
    await db_session.execute(
        update(Visit).where(Visit.id == week_id).values(window_opens_at=now - timedelta(minutes=1))
    )
    await db_session.execute(
        update(Visit)
        .where(Visit.id == month_id)
        .values(
            window_opens_at=now - timedelta(days=2), window_closes_at=now - timedelta(minutes=1)
        )
    )
    await db_session.commit()
    assert await _stored(db_session, str(week_id)) == VisitStatus.SCHEDULED

    read = await client.get(f"/api/schedules/visits/{week_id}", headers=world.coordinator)
    assert read.json()["status"] == "open"
    listed = by_key(await visits_of(client, world.coordinator, participant["id"]))
    assert listed["month-6#1"]["status"] == "missed"
    opened = await visits_of(client, world.coordinator, participant["id"], status="open")
    assert {v["event_key"] for v in opened} == {"baseline", "week-4"}
    scheduled = await visits_of(client, world.coordinator, participant["id"], status="scheduled")
    assert scheduled == []
    overdue = await client.get(
        "/api/schedules/visits/overdue",
        headers=world.coordinator,
        params={"study_id": str(world.study_id)},
    )
    assert [v["id"] for v in overdue.json()["data"]] == [str(month_id)]
    token = await participant_token(db_session, settings, participant["id"])
    manifest = await client.get("/api/sync/manifest", headers=token)
    assert {(v["event_key"], v["status"]) for v in manifest.json()["visits"]} == {
        ("baseline", "open"),
        ("week-4", "open"),
    }


# ---------------------------------------------------------------------------------------------
# The beat task, in process and in a real worker, on a database of its own (committed for real)


@dataclass(frozen=True, slots=True)
class SeededVisits:
    closed: uuid.UUID  # stored scheduled, window over
    opened: uuid.UUID  # stored scheduled, window open
    future: uuid.UUID  # stored scheduled, window ahead


async def _seed(settings: Settings) -> SeededVisits:
    from app.db.session import create_engine, create_sessionmaker

    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            study = await factories.study(session, code="SCAN-1")
            battery_id, _ = await factories.battery(session, study, ["simple-rt"])
            participant = await factories.participant(session, study, "S1")
            schedule = Schedule(id=uuid.uuid4(), study_id=study.id, current_version=1)
            session.add(schedule)
            await session.flush()
            version = ScheduleVersion(
                id=uuid.uuid4(), schedule_id=schedule.id, version=1, name="S", created_at=utcnow()
            )
            session.add(version)
            await session.flush()
            schedule_event = ScheduleEvent(
                id=uuid.uuid4(),
                schedule_version_id=version.id,
                position=0,
                key="e",
                label="E",
                anchor=VisitAnchor.ENROLLMENT_DATE,
                offset_days=0,
                window_before_days=0,
                window_after_days=0,
                battery_id=battery_id,
                repeat_count=3,
                repeat_every_days=2,
                reminders=[],
            )
            session.add(schedule_event)
            await session.flush()
            today = utcnow().date()
            ids = []
            for occurrence, due in (
                (1, today - timedelta(days=2)),
                (2, today),
                (3, today + timedelta(days=2)),
            ):
                ids.append(
                    _visit(study.id, participant.id, schedule, schedule_event, occurrence, due)
                )
                session.add(ids[-1])
            await session.commit()
            return SeededVisits(closed=ids[0].id, opened=ids[1].id, future=ids[2].id)
    finally:
        await engine.dispose()


def _visit(
    study_id: uuid.UUID,
    participant_id: uuid.UUID,
    schedule: Schedule,
    schedule_event: ScheduleEvent,
    occurrence: int,
    due: date,
) -> Visit:
    timing = window(due, 0, 0, "UTC")
    return Visit(
        id=uuid.uuid4(),
        study_id=study_id,
        participant_id=participant_id,
        schedule_id=schedule.id,
        schedule_version=1,
        schedule_event_id=schedule_event.id,
        event_key="e",
        occurrence=occurrence,
        label="E",
        battery_id=schedule_event.battery_id,
        anchor=VisitAnchor.ENROLLMENT_DATE,
        anchor_date=due,
        timezone="UTC",
        due_date=due,
        window_start_date=timing.start_date,
        window_end_date=timing.end_date,
        due_at=timing.due_at,
        window_opens_at=timing.opens_at,
        window_closes_at=timing.closes_at,
        status=VisitStatus.SCHEDULED,  # as stored before any scan
    )


async def _statuses(settings: Settings, seeded: SeededVisits) -> tuple[VisitStatus, ...]:
    from app.db.session import create_engine

    engine = create_engine(settings)
    try:
        async with AsyncSession(engine) as session:
            result = await session.execute(select(Visit.id, Visit.status))
            rows: dict[uuid.UUID, VisitStatus] = dict(result.all())
            return rows[seeded.closed], rows[seeded.opened], rows[seeded.future]
    finally:
        await engine.dispose()


async def _scan_events(settings: Settings) -> list[AuditEvent]:
    from app.db.session import create_engine

    engine = create_engine(settings)
    try:
        async with AsyncSession(engine) as session:
            return list(
                (
                    await session.scalars(
                        select(AuditEvent).where(AuditEvent.action == "visits.status_advanced")
                    )
                ).all()
            )
    finally:
        await engine.dispose()


@pytest.fixture
async def scan_database(
    isolated_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Settings, SeededVisits]]:
    monkeypatch.setenv("DATABASE_URL", isolated_settings.DATABASE_URL)
    monkeypatch.setenv("STORAGE_DIR", str(isolated_settings.STORAGE_DIR))
    get_settings.cache_clear()
    try:
        yield isolated_settings, await _seed(isolated_settings)
    finally:
        get_settings.cache_clear()


EXPECTED_AFTER_SCAN = (VisitStatus.MISSED, VisitStatus.OPEN, VisitStatus.SCHEDULED)


async def test_the_beat_task_runs_the_scan_in_a_transaction_of_its_own(
    scan_database: tuple[Settings, SeededVisits],
) -> None:
    settings, seeded = scan_database
    # The task is synchronous (it runs its own event loop), as a worker calls it.
    await asyncio.to_thread(tasks.advance_visit_statuses)
    assert await _statuses(settings, seeded) == EXPECTED_AFTER_SCAN
    [event] = await _scan_events(settings)
    assert event.after is not None
    assert (event.after["opened"], event.after["missed"]) == (
        [str(seeded.opened)],
        [str(seeded.closed)],
    )
    await asyncio.to_thread(tasks.advance_visit_statuses)
    assert len(await _scan_events(settings)) == 1


async def test_a_worker_runs_the_scan_sent_on_the_reminders_queue(
    scan_database: tuple[Settings, SeededVisits], redis_url: str, tmp_path: Path
) -> None:
    settings, seeded = scan_database
    env = _environment(settings.DATABASE_URL, tmp_path, CELERY_BROKER_URL=redis_url)
    processes: list[subprocess.Popen[bytes]] = []
    worker = _start(processes, ["worker", "--queues", "reminders", "--concurrency", "1"], env)
    try:
        sender = create_celery_app(
            make_settings(settings.DATABASE_URL, tmp_path, CELERY_BROKER_URL=redis_url)
        )
        sender.send_task(tasks.ADVANCE_VISIT_STATUSES_TASK)
        deadline = time.monotonic() + 60
        while await _statuses(settings, seeded) != EXPECTED_AFTER_SCAN:
            assert worker.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, "the scan did not run within 60 s"
            await asyncio.sleep(0.3)
        assert _stop(worker) == 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_beat_schedules_the_scan_every_minute(tmp_path: Path) -> None:
    app = create_celery_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", tmp_path))
    entry = app.conf.beat_schedule["advance-visit-statuses"]
    assert entry["task"] == tasks.ADVANCE_VISIT_STATUSES_TASK
    assert entry["schedule"] == timedelta(seconds=60)
    assert app.conf.task_routes[tasks.ADVANCE_VISIT_STATUSES_TASK] == {"queue": "reminders"}
