"""Notifications through real Celery worker processes: on Redis and on the embedded broker, kicked
by the API after a commit or by beat, and killed with SIGKILL between the claim and the reply of
the SMTP server without ever sending a message twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from app.config import Settings
from app.main import create_app
from app.models.notification import Notification, NotificationStatus
from app.models.user import UserRole
from app.workers.celery_app import create_celery_app, prepare_embedded_broker
from app.workers.tasks import DISPATCH_NOTIFICATIONS_TASK
from tests import factories
from tests.conftest import lifespan_client, make_settings
from tests.notifications.conftest import (
    SmsApi,
    SmtpServer,
    delivery_settings,
    session_on,
)
from tests.notifications.helpers import EMAIL, notify, person, reread

METRICIS = str(Path(sys.executable).with_name("metricis"))
SERVER_ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 60
INTERRUPTED = "interrupted; delivery unknown"


class Workers:
    """Worker processes a test starts, each in a process group of its own, all killed at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, settings: Settings, *arguments: str, **env: str) -> subprocess.Popen[bytes]:
        values = {
            **os.environ,
            **{name: str(value) for name, value in _environment(settings).items()},
            **env,
        }
        with (self.logs / f"worker-{len(self.started)}.log").open("wb") as log:
            process = subprocess.Popen(
                [METRICIS, "worker", "--queues", "reminders", "--concurrency", "1", *arguments],
                cwd=SERVER_ROOT,
                env=values,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _environment(settings: Settings) -> dict[str, object]:
    values: dict[str, object] = {
        "ENVIRONMENT": "test",
        "DATABASE_URL": settings.DATABASE_URL,
        "STORAGE_DIR": settings.STORAGE_DIR,
        "LOG_LEVEL": "info",
        **delivery_settings(settings.SMTP_PORT, settings.SMS_API_BASE_URL),
    }
    if settings.CELERY_BROKER_URL:
        values["CELERY_BROKER_URL"] = settings.CELERY_BROKER_URL
    return values


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    started = Workers(tmp_path)
    yield started
    started.stop_all()


def _settings(
    committed_settings: Settings, storage: Path, smtp: SmtpServer, sms: SmsApi, **extra: object
) -> Settings:
    return make_settings(
        committed_settings.DATABASE_URL,
        storage,
        **delivery_settings(smtp.port, sms.url),
        **extra,
    )


async def _eventually(
    check: Callable[[], Awaitable[bool]], processes: list[subprocess.Popen[bytes]], what: str
) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if await check():
            return
        for process in processes:
            assert process.poll() is None, f"a worker exited while waiting for {what}"
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {WAIT_SECONDS} s")


async def _status_is(
    settings: Settings, notification_id: uuid.UUID, wanted: NotificationStatus
) -> bool:
    async with session_on(settings) as session:
        return (await reread(session, notification_id)).status is wanted


def _kick(settings: Settings) -> None:
    prepare_embedded_broker(settings)
    create_celery_app(settings).send_task(DISPATCH_NOTIFICATIONS_TASK, queue="reminders")


async def _resend_through_the_api(settings: Settings) -> uuid.UUID:
    """A failed notification resent by a coordinator: the API's commit kicks the dispatcher."""
    async with session_on(settings) as session:
        who = await person(session, settings)
        failed = await notify(session, who)
        await session.execute(
            update(Notification)
            .where(Notification.id == failed.id)
            .values(status=NotificationStatus.FAILED, attempts=1, error="refused")
        )
        await session.commit()
    async with lifespan_client(create_app(settings)) as client:
        async with session_on(settings) as session:
            admin = await factories.staff(session, client, UserRole.ADMIN)
        response = await client.post(
            f"/api/notifications/{failed.id}/resend",
            json={"reason": "not received"},
            headers=admin.headers,
        )
        assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


async def test_a_resend_is_delivered_by_a_worker_on_the_redis_broker(
    committed_settings: Settings,
    tmp_path: Path,
    redis_url: str,
    smtp_server: SmtpServer,
    sms_api: SmsApi,
    workers: Workers,
) -> None:
    settings = _settings(
        committed_settings, tmp_path, smtp_server, sms_api, CELERY_BROKER_URL=redis_url
    )
    worker = workers.start(settings)

    resent = await _resend_through_the_api(settings)

    await _eventually(
        lambda: _status_is(settings, resent, NotificationStatus.SENT), [worker], "the send"
    )
    [mail] = smtp_server.received
    assert mail.recipients == [EMAIL]


async def test_the_embedded_broker_delivers_the_same_way(
    committed_settings: Settings,
    tmp_path: Path,
    smtp_server: SmtpServer,
    sms_api: SmsApi,
    workers: Workers,
) -> None:
    settings = _settings(committed_settings, tmp_path, smtp_server, sms_api)
    assert settings.uses_embedded_broker
    worker = workers.start(settings)

    resent = await _resend_through_the_api(settings)

    await _eventually(
        lambda: _status_is(settings, resent, NotificationStatus.SENT), [worker], "the send"
    )
    assert len(smtp_server.received) == 1
    assert list((tmp_path / "broker" / "queue").iterdir()) == []


async def test_beat_dispatches_what_is_due_without_a_kick(
    committed_settings: Settings,
    tmp_path: Path,
    redis_url: str,
    smtp_server: SmtpServer,
    sms_api: SmsApi,
    workers: Workers,
) -> None:
    settings = _settings(
        committed_settings, tmp_path, smtp_server, sms_api, CELERY_BROKER_URL=redis_url
    )
    async with session_on(settings) as session:
        who = await person(session, settings)
        # Committed straight away, not through a request: no kick is sent.
        due = await notify(session, who)
    worker = workers.start(settings, "--beat", NOTIFICATION_DISPATCH_INTERVAL_SECONDS="1")

    await _eventually(
        lambda: _status_is(settings, due.id, NotificationStatus.SENT), [worker], "the send"
    )
    assert len(smtp_server.received) == 1


def _pool_children(pid: int) -> list[int]:
    found = subprocess.run(
        ["ps", "-ww", "--ppid", str(pid), "-o", "pid=,stat="],
        capture_output=True,
        text=True,
        check=False,
    )
    return [
        int(line.split()[0])
        for line in found.stdout.splitlines()
        if not line.split()[1].startswith("Z")
    ]


@pytest.mark.parametrize("killed", ["task_process", "whole_worker"])
async def test_a_worker_killed_mid_send_never_sends_twice(
    committed_settings: Settings,
    tmp_path: Path,
    redis_url: str,
    smtp_server: SmtpServer,
    sms_api: SmsApi,
    workers: Workers,
    killed: str,
) -> None:
    """The SMTP server holds its reply to DATA: the message has arrived, the worker waits. The
    worker is then SIGKILLed: only the process running the task (Celery gives the task back to
    the queue and runs it again at once) or the whole worker (restarted by hand)."""
    settings = _settings(
        committed_settings, tmp_path, smtp_server, sms_api, CELERY_BROKER_URL=redis_url
    )
    mailbox = smtp_server.mailbox
    mailbox.stall = True
    async with session_on(settings) as session:
        who = await person(session, settings)
        stalled = await notify(session, who, body="The first reminder.")
    worker = workers.start(settings)
    _kick(settings)

    deadline = time.monotonic() + WAIT_SECONDS
    while not mailbox.stalled.is_set():
        assert time.monotonic() < deadline, "the message never reached the SMTP server"
        assert worker.poll() is None
        await asyncio.sleep(0.1)
    # The claim was committed before the provider was called.
    async with session_on(settings) as session:
        claimed = await reread(session, stalled.id)
        assert (claimed.status, claimed.attempts) == (NotificationStatus.SENDING, 1)

    if killed == "task_process":
        [child] = _pool_children(worker.pid)
        os.kill(child, signal.SIGKILL)
        # Celery notices the lost process, gives the task back and runs it again in a new one:
        # the row is `sending`, so the new run has nothing to send.
        await _eventually(lambda: _has_new_child(worker.pid, child), [worker], "a new pool process")
        _kick(settings)
        await asyncio.sleep(5)
        assert len(smtp_server.received) == 1
        async with session_on(settings) as session:
            assert (await reread(session, stalled.id)).status is NotificationStatus.SENDING
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    mailbox.stall = False
    mailbox.release.set()

    # Restarted, with a short sending timeout so the sweep comes soon (it must outlast the
    # task time limit, hence the short limits too).
    restarted = workers.start(
        settings,
        NOTIFICATION_SENDING_TIMEOUT_SECONDS="7",
        WORKER_TASK_TIME_LIMIT_SECONDS="6",
        WORKER_TASK_SOFT_TIME_LIMIT_SECONDS="5",
    )

    async def interrupted() -> bool:
        _kick(settings)
        async with session_on(settings) as session:
            row = await reread(session, stalled.id)
        return row.status is NotificationStatus.FAILED

    await _eventually(interrupted, [restarted], "the sweep of the interrupted row")
    async with session_on(settings) as session:
        row = await reread(session, stalled.id)
        assert (row.error, row.attempts, row.sent_at) == (INTERRUPTED, 1, None)
        fresh = await notify(session, who, body="The second reminder.")
    _kick(settings)
    await _eventually(
        lambda: _status_is(settings, fresh.id, NotificationStatus.SENT), [restarted], "the send"
    )
    # The stalled message arrived once and was never sent again; the next one went out.
    texts = [mail.text.split("\n", 1)[0] for mail in smtp_server.received]
    assert texts == ["The first reminder.", "The second reminder."]


async def _has_new_child(pid: int, old: int) -> bool:
    children = _pool_children(pid)
    return bool(children) and old not in children
