"""Celery workers and beat as real processes: the Redis broker, the embedded (filesystem) broker
and `metricis serve` supervising the embedded worker run the same task."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from app.db.session import create_engine
from app.models.audit import AuditCategory
from app.services.audit import AuditContext, ChainSettings, record_event, verify_chain
from app.services.heartbeats import BEAT_HEARTBEAT, last_heartbeat
from app.workers.celery_app import (
    TICK_EXPIRY_MARGIN_SECONDS,
    create_celery_app,
    prepare_embedded_broker,
)
from app.workers.tasks import AUDIT_CHAIN_TASK, BEAT_HEARTBEAT_TASK
from tests.audit.helpers import KEY_2, encoded, stored_links
from tests.conftest import make_settings
from tests.foundation.test_serving import _free_port, _wait_healthy

METRICIS = str(Path(sys.executable).with_name("metricis"))
SERVER_ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 60


async def _heartbeat(engine: AsyncEngine) -> datetime | None:
    async with AsyncSession(engine) as session:
        return await last_heartbeat(session, BEAT_HEARTBEAT)


async def _wait_for_heartbeat(engine: AsyncEngine, process: subprocess.Popen[bytes]) -> datetime:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        beat_at = await _heartbeat(engine)
        if beat_at is not None:
            return beat_at
        assert process.poll() is None, "the worker exited"
        await asyncio.sleep(0.3)
    raise AssertionError(f"no heartbeat within {WAIT_SECONDS} s")


def _environment(database_url: str, storage_dir: Path, **values: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "STORAGE_DIR": str(storage_dir),
        "LOG_LEVEL": "warning",
        **values,
    }


def _start(
    processes: list[subprocess.Popen[bytes]], arguments: list[str], env: dict[str, str]
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([METRICIS, *arguments], cwd=SERVER_ROOT, env=env)
    processes.append(process)
    return process


def _stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=WAIT_SECONDS)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts, killed if the test failed before stopping them."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_a_worker_on_the_redis_broker_runs_a_task_end_to_end(
    database_url: str,
    tmp_path: Path,
    redis_url: str,
    heartbeats: AsyncEngine,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    env = _environment(database_url, tmp_path, CELERY_BROKER_URL=redis_url)
    worker = _start(processes, ["worker", "--queues", "reminders", "--concurrency", "1"], env)
    sender = create_celery_app(make_settings(database_url, tmp_path, CELERY_BROKER_URL=redis_url))
    sender.send_task(BEAT_HEARTBEAT_TASK)

    await _wait_for_heartbeat(heartbeats, worker)
    assert _stop(worker) == 0


async def test_the_embedded_broker_runs_the_same_task_without_a_server(
    database_url: str,
    tmp_path: Path,
    heartbeats: AsyncEngine,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    settings = make_settings(database_url, tmp_path)
    assert settings.uses_embedded_broker
    env = _environment(database_url, tmp_path)
    worker = _start(processes, ["worker", "--concurrency", "1"], env)
    prepare_embedded_broker(settings)
    create_celery_app(settings).send_task(BEAT_HEARTBEAT_TASK)

    await _wait_for_heartbeat(heartbeats, worker)
    assert _stop(worker) == 0
    assert list((tmp_path / "broker" / "queue").iterdir()) == []


def test_beat_sends_the_heartbeat_and_the_audit_chainer_on_schedule_and_stops(
    database_url: str, tmp_path: Path, redis_url: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    env = _environment(
        database_url,
        tmp_path,
        CELERY_BROKER_URL=redis_url,
        BEAT_HEARTBEAT_SECONDS="1",
        AUDIT_CHAIN_INTERVAL_SECONDS="1",
    )
    beat = _start(processes, ["beat"], env)
    broker = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + WAIT_SECONDS
    while (broker.llen("reminders") < 2 or broker.llen("audit") < 2) and (
        time.monotonic() < deadline
    ):
        assert beat.poll() is None, "beat exited"
        time.sleep(0.3)
    assert broker.llen("reminders") >= 2
    assert broker.llen("audit") >= 2
    assert _stop(beat) == 0


async def test_a_worker_links_the_audit_chain_and_publishes_a_checkpoint(
    isolated_settings: Settings,
    tmp_path: Path,
    redis_url: str,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    """The chainer through the real path: a message on the audit queue, a worker process that
    links the committed events with the configured key and writes a checkpoint file."""
    checkpoints = tmp_path / "checkpoints"
    settings = isolated_settings.model_copy(
        update={
            "AUDIT_CHAIN_KEYS": Settings(AUDIT_CHAIN_KEYS=encoded(KEY_2)).AUDIT_CHAIN_KEYS,
            "AUDIT_CHECKPOINT_DIR": checkpoints,
        }
    )
    engine = create_engine(settings)
    try:
        async with AsyncSession(engine) as session, session.begin():
            for index in range(3):
                await record_event(
                    session,
                    AuditContext.system(),
                    action=f"test.worker.{index}",
                    category=AuditCategory.DATA,
                )
        env = _environment(
            settings.DATABASE_URL,
            tmp_path,
            CELERY_BROKER_URL=redis_url,
            AUDIT_CHAIN_KEYS=encoded(KEY_2),
            AUDIT_CHECKPOINT_DIR=str(checkpoints),
        )
        worker = _start(processes, ["worker", "--queues", "audit", "--concurrency", "1"], env)
        create_celery_app(settings.model_copy(update={"CELERY_BROKER_URL": redis_url})).send_task(
            AUDIT_CHAIN_TASK
        )
        deadline = time.monotonic() + WAIT_SECONDS
        links = []
        while time.monotonic() < deadline:
            async with AsyncSession(engine) as session:
                links = await stored_links(session)
            if len(links) == 3 and list(checkpoints.glob("checkpoints-*.jsonl")):
                break
            assert worker.poll() is None, "the worker exited"
            await asyncio.sleep(0.3)
        assert [(link.sequence, link.key_id) for link in links] == [(1, "k2"), (2, "k2"), (3, "k2")]
        assert _stop(worker) == 0

        async with AsyncSession(engine) as session, session.begin():
            result = await verify_chain(session, ChainSettings.from_settings(settings))
        assert result.valid, result
        assert (result.events_checked, result.checkpoints_checked) == (3, 1)
    finally:
        await engine.dispose()


def test_an_unknown_queue_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [METRICIS, "worker", "--queues", "reminders,mail"],
        cwd=SERVER_ROOT,
        env=_environment(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", tmp_path),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "Unknown queue(s) mail" in result.stderr


def _companions(pid: int) -> list[int]:
    found = subprocess.run(
        ["ps", "-ww", "--ppid", str(pid), "-o", "pid=,stat=,args="],
        capture_output=True,
        text=True,
        check=False,
    )
    return [
        int(line.split()[0])
        for line in found.stdout.splitlines()
        if "celery" in line and not line.split()[1].startswith("Z")
    ]


def test_serve_runs_the_embedded_worker_and_beat_and_stops_them(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port = _free_port()
    env = _environment(
        f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}",
        tmp_path / "storage",
        HOST="127.0.0.1",
        PORT=str(port),
        BEAT_HEARTBEAT_SECONDS="1",
        SHUTDOWN_GRACE_SECONDS="1",
    )
    subprocess.run([METRICIS, "db", "upgrade"], cwd=SERVER_ROOT, env=env, check=True)
    server = _start(processes, ["serve"], env)
    url = f"http://127.0.0.1:{port}/api/health/detailed"
    _wait_healthy(f"http://127.0.0.1:{port}/api/health")

    def beat_ticks() -> dict[str, object]:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            body: dict[str, object] = httpx.get(url, timeout=5).json()
            dependencies = body["dependencies"]
            assert isinstance(dependencies, dict)
            if dependencies["beat"]["status"] == "ok":
                return body
            time.sleep(0.5)
        raise AssertionError("beat did not tick")

    report = beat_ticks()
    assert report["status"] == "ok"
    [companion] = _companions(server.pid)
    os.kill(companion, signal.SIGKILL)
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline and _companions(server.pid) in ([], [companion]):
        time.sleep(0.3)
    [restarted] = _companions(server.pid)
    assert restarted != companion
    # Nothing of the killed worker is left: its embedded beat would tick beside the new one.
    assert _group_gone(companion)

    assert _stop(server) == 0
    assert _companions(server.pid) == []
    assert _group_gone(restarted)


def _group_gone(group_id: int) -> bool:
    """Whether no process of the group is left, allowing a moment for killed ones to be reaped."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(group_id, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def test_a_periodic_tick_outlives_its_interval_by_the_delivery_margin(tmp_path: Path) -> None:
    """A tick expiring exactly one interval after it was sent was discarded on arrival on the
    embedded broker (which polls once a second) whenever the interval was a second or two."""
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        tmp_path,
        REMINDER_SCAN_SECONDS=1,
        NOTIFICATION_DISPATCH_INTERVAL_SECONDS=1,
    )
    schedule = create_celery_app(settings).conf.beat_schedule
    expiring = {name: entry for name, entry in schedule.items() if "expires" in entry["options"]}
    assert {"scan-visit-reminders", "dispatch-notifications", "run-exports"} <= set(expiring)
    for name, entry in expiring.items():
        interval = entry["schedule"].total_seconds()
        assert entry["options"]["expires"] >= interval + TICK_EXPIRY_MARGIN_SECONDS, name
