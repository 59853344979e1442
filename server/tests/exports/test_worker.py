"""An export job made by a real Celery worker process on the `exports` queue: the API's commit
asks the worker (embedded broker: folders under the shared storage directory), the worker
claims the job, writes the file to the shared storage, and the API serves it. Commits for real,
on a database of its own."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import signal
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import Settings
from app.db.session import create_engine, create_sessionmaker
from app.main import create_app
from app.models.study import MemberRole
from tests import factories
from tests.conftest import lifespan_client, make_settings
from tests.exports.conftest import read_csv, trials
from tests.webhooks.processes import process_environment
from tests.workers.test_workers import METRICIS, SERVER_ROOT

WAIT_SECONDS = 90


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
    process = subprocess.Popen(
        [METRICIS, "worker", "--queues", "exports", "--concurrency", "1"],
        cwd=SERVER_ROOT,
        env=process_environment(settings),
        start_new_session=True,
    )
    started.append(process)
    return process


async def test_a_worker_process_makes_the_export(
    isolated_settings: Settings,
    tmp_path: Path,
    worker_processes: list[subprocess.Popen[bytes]],
) -> None:
    settings = make_settings(isolated_settings.DATABASE_URL, tmp_path)
    assert settings.uses_embedded_broker
    worker = _start_worker(settings, worker_processes)
    engine = create_engine(settings)
    sessions = create_sessionmaker(engine)
    try:
        async with lifespan_client(create_app(settings)) as client:
            async with sessions() as session:
                study = await factories.active_study(session)
                site = await factories.site(session, study, "S1")
                battery_id, _ = await factories.battery(session, study, ["simple-rt"])
                researcher = await factories.study_member(
                    session, client, study, MemberRole.RESEARCHER
                )
                people = [
                    await factories.participant(session, study, f"K{index}", site)
                    for index in range(3)
                ]
            for person in people:
                started = await factories.start_session(
                    client, researcher.headers, person.id, battery_id
                )
                assert started.status_code == 201, started.text
                submitted = await factories.submit(
                    client,
                    researcher.headers,
                    started.json()["session_id"],
                    {"trials": trials(person.participant_code)},
                )
                assert submitted.status_code == 201, submitted.text

            created = await client.post(
                "/api/exports",
                headers=researcher.headers,
                json={"study_id": str(study.id), "format": "csv", "dataset": "all"},
            )
            assert created.status_code == 202, created.text
            path = f"/api/exports/{created.json()['id']}"
            deadline = time.monotonic() + WAIT_SECONDS
            while (job := (await client.get(path, headers=researcher.headers)).json())[
                "status"
            ] in ("queued", "running"):
                assert time.monotonic() < deadline, job
                assert worker.poll() is None, "the worker exited"
                await asyncio.sleep(0.3)
            assert job["status"] == "ready", job
            assert job["progress"] == {"rows_done": 36, "rows_total": 36, "percent": 100.0}
            downloaded = await client.get(f"{path}/download", headers=researcher.headers)
            assert downloaded.status_code == 200, downloaded.text
            assert hashlib.sha256(downloaded.content).hexdigest() == job["sha256"]
            archive = zipfile.ZipFile(io.BytesIO(downloaded.content))
            assert len(read_csv(archive, "trials.csv")) == 30
            assert len(read_csv(archive, "scores.csv")) == 3
            assert len(read_csv(archive, "participants.csv")) == 3
    finally:
        await engine.dispose()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
