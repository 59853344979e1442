"""Reports made by a real Celery worker process on the `exports` queue, as export jobs are
(tests/exports/test_worker.py): the API's commit asks the worker through the embedded broker,
the worker draws the PDF and stores it, the API serves it. Commits for real, on a database of
its own."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from app.config import Settings
from app.db.session import create_engine, create_sessionmaker
from app.main import create_app
from app.models.study import MemberRole
from tests import factories
from tests.conftest import lifespan_client, make_settings
from tests.exports.test_worker import WAIT_SECONDS, _start_worker, worker_processes
from tests.reports.conftest import MIN_INK_SHARE, ink_shares, pdf_text

__all__ = ["worker_processes"]  # the fixture, shared with the exports' worker test


async def _wait(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    path: str,
    worker: subprocess.Popen[bytes],
) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        report: dict[str, Any] = (await client.get(path, headers=headers)).json()
        if report["status"] not in ("queued", "running"):
            return report
        assert time.monotonic() < deadline, report
        assert worker.poll() is None, "the worker exited"
        await asyncio.sleep(0.3)


async def test_a_worker_process_makes_both_reports(
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
                site = await factories.site(session, study, "S1", name="<b>Main & co")
                battery_id, _ = await factories.battery(session, study, ["simple-rt"])
                researcher = await factories.study_member(
                    session, client, study, MemberRole.RESEARCHER
                )
                person = await factories.participant(session, study, "WORKER-01", site)
            headers = researcher.headers
            started = await factories.start_session(client, headers, person.id, battery_id)
            assert started.status_code == 201, started.text
            submitted = await factories.submit(
                client,
                headers,
                started.json()["session_id"],
                {"trials": factories.simple_rt_trials(10)},
            )
            assert submitted.status_code == 201, submitted.text

            urls = {
                "participant": f"/api/reports/studies/{study.id}/participants/{person.id}",
                "study": f"/api/reports/studies/{study.id}",
            }
            texts: dict[str, str] = {}
            for kind, url in urls.items():
                created = await client.post(url, headers=headers)
                assert created.status_code == 202, created.text
                path = f"/api/reports/{created.json()['id']}"
                report = await _wait(client, headers, path, worker)
                assert report["status"] == "ready", report
                downloaded = await client.get(report["download_url"], headers=headers)
                assert downloaded.status_code == 200, downloaded.text
                assert hashlib.sha256(downloaded.content).hexdigest() == report["sha256"]
                assert report["kind"] == kind
                pages = pdf_text(downloaded.content)
                assert "S1 – <b>Main & co" in pages[0]
                assert all(share > MIN_INK_SHARE for share in ink_shares(downloaded.content))
                texts[kind] = " ".join(pages)
            assert "WORKER-01" in texts["participant"] and "median_rt" in texts["participant"]
            assert "WORKER-01" not in texts["study"]
            assert "Simple Reaction Time: median_rt (ms)" in texts["study"]
    finally:
        await engine.dispose()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
