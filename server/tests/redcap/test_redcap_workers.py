"""REDCap pushes by a real Celery worker process on the `redcap` queue: the API commits sessions
and kicks the worker, which pushes through PyCap over real HTTP; while the emulator is down every
attempt fails and is retried, and once it is back every session is delivered exactly once per
record, the log accounting for every attempt. Commits for real, on a database of its own."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.session import create_engine, create_sessionmaker
from app.main import create_app
from app.models.outbox import (
    AttemptOutcome,
    DeliveryStatus,
    DestinationKind,
    OutboxDelivery,
    OutboxDeliveryAttempt,
)
from app.models.study import ConsentMode, MemberRole, StudyStatus
from app.workers.celery_app import create_celery_app, prepare_embedded_broker
from app.workers.tasks import DISPATCH_REDCAP_TASK
from tests import factories
from tests.conftest import lifespan_client
from tests.redcap.conftest import MAPPING, TOKEN, Team, classic_project, complete_session
from tests.redcap.emulator import Emulator, running
from tests.webhooks.processes import process_environment, worker_settings
from tests.workers.test_workers import METRICIS, SERVER_ROOT

WAIT_SECONDS = 90


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    yield from running(Emulator(classic_project()))


@pytest.fixture
async def sessions(isolated_settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(isolated_settings)
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
def worker_processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _start_worker(
    settings: Settings, started: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    env = {**process_environment(settings), "REDCAP_TIMEOUT_SECONDS": "2"}
    process = subprocess.Popen(
        [METRICIS, "worker", "--queues", "redcap", "--concurrency", "1"],
        cwd=SERVER_ROOT,
        env=env,
        start_new_session=True,
    )
    started.append(process)
    return process


async def _statuses(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessions() as session:
        rows = await session.execute(
            select(OutboxDelivery.status, func.count())
            .where(OutboxDelivery.destination == DestinationKind.REDCAP)
            .group_by(OutboxDelivery.status)
        )
        return {status.value: int(count) for status, count in rows}


async def _attempt_outcomes(sessions: async_sessionmaker[AsyncSession]) -> list[AttemptOutcome]:
    async with sessions() as session:
        return list((await session.scalars(select(OutboxDeliveryAttempt.outcome))).all())


async def _team(sessions: async_sessionmaker[AsyncSession], client: httpx.AsyncClient) -> Team:
    async with sessions() as session:
        study = await factories.study(
            session, status=StudyStatus.ACTIVE, consent_mode=ConsentMode.NONE
        )
        site = await factories.site(session, study, "LYON", "Europe/Paris")
        battery_id, _ = await factories.battery(session, study, ["simple-rt"])
        researcher = await factories.study_member(session, client, study, MemberRole.RESEARCHER)
    return Team(
        study_id=study.id,
        site_id=site.id,
        battery_id=battery_id,
        admin=researcher.headers,
        researcher=researcher.headers,
        coordinator=researcher.headers,
        outsider=researcher.headers,
    )


@pytest.mark.parametrize("broker", ["redis", "embedded"])
async def test_a_worker_pushes_every_session_once_redcap_is_back(
    broker: str,
    isolated_settings: Settings,
    tmp_path: Path,
    redis_url: str,
    emulator: Emulator,
    sessions: async_sessionmaker[AsyncSession],
    worker_processes: list[subprocess.Popen[bytes]],
) -> None:
    extra = {"CELERY_BROKER_URL": redis_url} if broker == "redis" else {}
    settings = worker_settings(isolated_settings, tmp_path, **extra)
    assert settings.uses_embedded_broker is (broker == "embedded")
    worker = _start_worker(settings, worker_processes)
    count = 6
    async with lifespan_client(create_app(settings)) as client:
        team = await _team(sessions, client)
        configured = await client.put(
            f"{team.redcap}/config",
            headers=team.researcher,
            json={
                "api_url": emulator.url,
                "api_token": TOKEN,
                "record_id_field": "record_id",
                "field_mapping": MAPPING,
            },
        )
        assert configured.status_code == 201, configured.text

        emulator.stop()  # REDCap goes down before the sessions complete
        for index in range(count):
            enrolled = await client.post(
                "/api/participants",
                headers=team.researcher,
                json={"study_id": str(team.study_id), "participant_id": f"WK-{index:02d}"},
            )
            assert enrolled.status_code == 201, enrolled.text
            await complete_session(client, team, enrolled.json()["id"], seed=index)

        # The API's kicks reach the worker: attempts fail while REDCap is down.
        deadline = time.monotonic() + WAIT_SECONDS
        while AttemptOutcome.CONNECTION_ERROR not in await _attempt_outcomes(sessions):
            assert time.monotonic() < deadline, await _statuses(sessions)
            assert worker.poll() is None, "the worker exited"
            await asyncio.sleep(0.2)
        assert "delivered" not in await _statuses(sessions)

        emulator.start()
        if settings.uses_embedded_broker:
            prepare_embedded_broker(settings)
        sender = create_celery_app(settings)
        while (await _statuses(sessions)).get("delivered", 0) < count:
            assert time.monotonic() < deadline, await _statuses(sessions)
            assert worker.poll() is None, "the worker exited"
            sender.send_task(DISPATCH_REDCAP_TASK)  # beat's scan, played by the test
            await asyncio.sleep(0.5)

    assert await _statuses(sessions) == {DeliveryStatus.DELIVERED.value: count}
    project = emulator.projects[TOKEN]
    assert sorted(project.records) == [(f"WK-{index:02d}", "") for index in range(count)]
    assert all(set(values) == {"srt_median", "srt_n"} for values in project.records.values())
    # Every attempt is in the log: the failures, and one import per delivered session.
    outcomes = await _attempt_outcomes(sessions)
    assert outcomes.count(AttemptOutcome.DELIVERED) == count == len(project.imports)
    assert all(
        outcome in (AttemptOutcome.DELIVERED, AttemptOutcome.CONNECTION_ERROR)
        for outcome in outcomes
    )
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
