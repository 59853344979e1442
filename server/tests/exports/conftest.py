"""A study with known data for the export tests, built through the API and the factories.

Two sites (one whose name is a spreadsheet formula), three participants with sessions submitted
through the API: A1 at site S1 with an email that is a formula, B1 at site S2, and W1 at S1 who
then withdrew with deletion of their data. Jobs run in the test's transaction through the same
function the Celery task calls, with a session factory whose sessions join that transaction.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from app.api.routers.exports import get_stream_session
from app.config import Settings
from app.core.clock import utcnow
from app.models.assessment import AssessmentSession
from app.models.export import ExportJob
from app.models.participant import ParticipantStatus, WithdrawalScope
from app.models.schedule import (
    Schedule,
    ScheduleEvent,
    ScheduleVersion,
    Visit,
    VisitAnchor,
    VisitStatus,
)
from app.models.study import MemberRole, Study
from app.services.exports.jobs import run_pending_exports
from tests import factories

FORMULA_EMAIL = "=cmd|'/Ccalc.exe'!A0@example.org"
FORMULA_SITE = '=HYPERLINK("http://evil.example","x")'


@dataclass
class World:
    study: Study
    study_id: str
    site_ids: dict[str, uuid.UUID]
    participant_ids: dict[str, uuid.UUID]
    session_ids: dict[str, str]
    researcher: factories.Staff
    coordinator: factories.Staff
    viewer: factories.Staff
    site_researcher: factories.Staff  # a researcher scoped to S2
    outsider: factories.Staff
    battery_id: uuid.UUID  # simple-rt and flanker


def trials(participant: str) -> list[dict[str, object]]:
    """Ten simple-RT trials; the first's response is a formula, the second's starts with '-'."""
    rows = factories.simple_rt_trials(10, base=300.0)
    rows[0]["response"] = "=1+2"
    rows[1]["response"] = "-SUM(A1)"
    rows[2]["stimulus"] = f"dot-{participant}"
    return rows


@pytest.fixture
async def world(client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings) -> World:
    study = await factories.active_study(db_session)
    s1 = await factories.site(db_session, study, "S1", name=FORMULA_SITE)
    s2 = await factories.site(db_session, study, "S2")
    researcher = await factories.study_member(db_session, client, study, MemberRole.RESEARCHER)
    coordinator = await factories.study_member(db_session, client, study, MemberRole.COORDINATOR)
    viewer = await factories.study_member(db_session, client, study, MemberRole.READ_ONLY)
    site_researcher = await factories.study_member(
        db_session, client, study, MemberRole.RESEARCHER, s2
    )
    other = await factories.active_study(db_session)
    outsider = await factories.study_member(db_session, client, other, MemberRole.RESEARCHER)
    battery_id, _ = await factories.battery(db_session, study, ["simple-rt", "flanker"])
    people = {
        "A1": await factories.participant(
            db_session, study, "A1", s1, settings=settings, email=FORMULA_EMAIL, phone="+15550001"
        ),
        "B1": await factories.participant(db_session, study, "B1", s2),
        "W1": await factories.participant(db_session, study, "W1", s1),
    }
    sessions: dict[str, str] = {}
    for code, person in people.items():
        started = await factories.start_session(client, researcher.headers, person.id, battery_id)
        assert started.status_code == 201, started.text
        session_id = started.json()["session_id"]
        body: dict[str, object] = {"trials": trials(code) + factories.task_trials("flanker", 12)}
        submitted = await factories.submit(client, researcher.headers, session_id, body)
        assert submitted.status_code == 201, submitted.text
        sessions[code] = session_id
    withdrawn = people["W1"]
    withdrawn.status = ParticipantStatus.WITHDRAWN
    withdrawn.withdrawal_scope = WithdrawalScope.DELETE_DATA
    await db_session.commit()
    return World(
        study=study,
        study_id=str(study.id),
        site_ids={"S1": s1.id, "S2": s2.id},
        participant_ids={code: p.id for code, p in people.items()},
        session_ids=sessions,
        researcher=researcher,
        coordinator=coordinator,
        viewer=viewer,
        site_researcher=site_researcher,
        outsider=outsider,
        battery_id=battery_id,
    )


async def session_of(
    client: httpx.AsyncClient,
    world: World,
    participant_id: uuid.UUID,
    body: dict[str, object],
    **start: object,
) -> str:
    """A session of the participant on the world's battery with `body` submitted: its id."""
    started = await factories.start_session(
        client, world.researcher.headers, participant_id, world.battery_id, **start
    )
    assert started.status_code == 201, started.text
    session_id: str = started.json()["session_id"]
    submitted = await factories.submit(client, world.researcher.headers, session_id, body)
    assert submitted.status_code == 201, submitted.text
    return session_id


async def attach_visit(
    db_session: AsyncSession,
    world: World,
    session_id: str,
    event_key: str,
    occurrence: int = 1,
) -> None:
    """Make the session one of its participant's visit `event_key` (occurrence), creating the
    schedule event and the visit when they do not exist yet."""
    record = await db_session.get(AssessmentSession, uuid.UUID(session_id))
    assert record is not None
    visit = await db_session.scalar(
        select(Visit).where(
            Visit.participant_id == record.participant_id,
            Visit.event_key == event_key,
            Visit.occurrence == occurrence,
        )
    )
    if visit is None:
        schedule = await db_session.scalar(
            select(Schedule).where(Schedule.study_id == world.study.id)
        )
        now = utcnow()
        if schedule is None:
            schedule = Schedule(id=uuid.uuid4(), study_id=world.study.id, current_version=1)
            db_session.add(schedule)
            await db_session.flush()
            db_session.add(
                ScheduleVersion(
                    id=uuid.uuid4(),
                    schedule_id=schedule.id,
                    version=1,
                    name="Plan",
                    created_at=now,
                )
            )
            await db_session.flush()
        version_id = await db_session.scalar(
            select(ScheduleVersion.id).where(ScheduleVersion.schedule_id == schedule.id)
        )
        assert version_id is not None
        event = await db_session.scalar(
            select(ScheduleEvent).where(
                ScheduleEvent.schedule_version_id == version_id, ScheduleEvent.key == event_key
            )
        )
        if event is None:
            event = ScheduleEvent(
                id=uuid.uuid4(),
                schedule_version_id=version_id,
                position=0,
                key=event_key,
                label=f"Visit {event_key}",
                anchor=VisitAnchor.ENROLLMENT_DATE,
                offset_days=0,
                window_before_days=0,
                window_after_days=7,
                battery_id=world.battery_id,
                repeat_count=1,
                reminders=[],
            )
            db_session.add(event)
            await db_session.flush()
        visit = Visit(
            id=uuid.uuid4(),
            study_id=world.study.id,
            participant_id=record.participant_id,
            schedule_id=schedule.id,
            schedule_version=1,
            schedule_event_id=event.id,
            event_key=event_key,
            occurrence=occurrence,
            label=f"Visit {event_key} #{occurrence}",
            battery_id=world.battery_id,
            anchor=VisitAnchor.ENROLLMENT_DATE,
            anchor_date=now.date(),
            timezone="UTC",
            due_date=now.date(),
            window_start_date=now.date(),
            window_end_date=now.date(),
            due_at=now,
            window_opens_at=now,
            window_closes_at=now,
            status=VisitStatus.COMPLETED,
            completed_at=now,
        )
        db_session.add(visit)
        await db_session.flush()
    record.visit_id = visit.id
    await db_session.commit()


@pytest.fixture
def job_sessions(db_connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    """Sessions that join the test's transaction (their commits are savepoints), as the
    worker's own sessions would join the database."""
    return async_sessionmaker(
        bind=db_connection,
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
        autoflush=False,
    )


@dataclass
class Runner:
    sessions: async_sessionmaker[AsyncSession]
    settings: Settings
    db_session: AsyncSession

    async def run(self) -> dict[str, int]:
        report = await run_pending_exports(self.sessions, self.settings)
        # The request session keeps the jobs it read: read them again.
        for row in list(self.db_session.identity_map.values()):
            if isinstance(row, ExportJob):
                self.db_session.expire(row)
        return report


@pytest.fixture
def runner(
    job_sessions: async_sessionmaker[AsyncSession], settings: Settings, db_session: AsyncSession
) -> Runner:
    return Runner(job_sessions, settings, db_session)


async def create(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]
) -> httpx.Response:
    return await client.post("/api/exports", headers=headers, json=body)


async def export_archive(
    client: httpx.AsyncClient, runner: Runner, headers: dict[str, str], body: dict[str, Any]
) -> tuple[dict[str, Any], zipfile.ZipFile]:
    """Create a job, run it, check it is ready, download it: (the job, the zip)."""
    created = await create(client, headers, body)
    assert created.status_code == 202, created.text
    assert created.json()["status"] == "queued"
    await runner.run()
    job = (await client.get(f"/api/exports/{created.json()['id']}", headers=headers)).json()
    assert job["status"] == "ready", job
    downloaded = await client.get(f"/api/exports/{job['id']}/download", headers=headers)
    assert downloaded.status_code == 200, downloaded.text
    return job, zipfile.ZipFile(io.BytesIO(downloaded.content))


def read_csv(archive: zipfile.ZipFile, name: str) -> list[dict[str, str]]:
    text = archive.read(name).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def read_jsonl(archive: zipfile.ZipFile, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in archive.read(name).decode().splitlines() if line]


@pytest.fixture
def stream_in_test_session(app: FastAPI, db_session: AsyncSession) -> None:
    """The streamed download reads through a session of its own; in the tests, the test's."""

    async def test_stream_session() -> AsyncIterator[AsyncSession]:
        yield db_session

    app.dependency_overrides[get_stream_session] = test_stream_session
