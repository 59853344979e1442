"""Notification benchmark (issue: a worker sends at least 200 emails/s to the local SMTP server).

    python -m bench.notifications [--emails 2000] [--runs 3] [--database postgres|sqlite]
                                  [--broker redis|embedded] [--batch-size 20]

Each run: a fresh database built by the migrations, N due email notifications written through
`schedule_notification`, an SMTP server (aiosmtpd) on 127.0.0.1, and one real worker process
(`metricis worker --queues reminders --concurrency 1`). Once the worker is ready, one dispatch
task is sent and the clock runs until every row is `sent`. The time covers the whole worker path:
the task through the broker, claims committed before sending, one SMTP transaction per message
(one connection for the run), each outcome committed. Afterwards it checks that the server
received N messages with N distinct Message-IDs, one per row. Bounded: 127.0.0.1 only, at most
`--emails` messages per run, stops by itself. Needs PostgreSQL (for `--database postgres`) and
Redis (for `--broker redis`) on this machine; creates and drops its own database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from aiosmtpd.controller import Controller
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.core.security import FieldEncryptor
from app.db.session import create_engine, create_sessionmaker
from app.models.notification import (
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationStatus,
)
from app.models.participant import Participant
from app.models.study import Study
from app.services.heartbeats import BEAT_HEARTBEAT, last_heartbeat
from app.services.notifications.scheduling import schedule_notification
from app.workers.celery_app import create_celery_app, prepare_embedded_broker
from app.workers.tasks import BEAT_HEARTBEAT_TASK, DISPATCH_NOTIFICATIONS_TASK
from bench.server import METRICIS, SERVER_ROOT, free_port
from bench.submit import create_database, drop_database

PARTICIPANTS = 50
TIMEOUT_SECONDS = 300


class Counter:
    """aiosmtpd handler: accepts every message and keeps its Message-ID."""

    def __init__(self) -> None:
        self.message_ids: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        content: bytes = envelope.content
        for line in content.split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                with self.lock:
                    self.message_ids.append(line.split(b":", 1)[1].strip().decode())
                break
            if not line:
                break
        return "250 OK"


@contextmanager
def smtp_server() -> Iterator[tuple[int, Counter]]:
    counter = Counter()
    controller = Controller(counter, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, counter
    finally:
        controller.stop()


async def prepare(settings: Settings, emails: int) -> None:
    """A study, participants with an address, and `emails` notifications due now."""
    engine = create_engine(settings)
    encryptor = FieldEncryptor.from_settings(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            study = Study(id=uuid.uuid4(), code="BENCH-NOTIFY", name="Bench", config={})
            session.add(study)
            await session.flush()
            participants = [
                Participant(
                    id=uuid.uuid4(),
                    study_id=study.id,
                    participant_code=f"N{index:04d}",
                    email_encrypted=encryptor.encrypt(f"participant{index}@example.org"),
                    language="en",
                    timezone="UTC",
                )
                for index in range(PARTICIPANTS)
            ]
            session.add_all(participants)
            await session.flush()
            due = utcnow()
            for index in range(emails):
                await schedule_notification(
                    session,
                    study_id=study.id,
                    participant_id=participants[index % PARTICIPANTS].id,
                    visit_id=None,
                    kind=NotificationKind.TEST,
                    channel=NotificationChannel.EMAIL,
                    send_at=due,
                    language="en",
                    subject="Your visit is open",
                    body=f"Reminder {index}: your next visit is open. Open the app to take part.",
                    dedupe_key=f"bench:{index}",
                )
            await session.commit()
    finally:
        await engine.dispose()


class Progress:
    """Reads the database the worker writes to, on one connection pool for the whole run."""

    def __init__(self, settings: Settings) -> None:
        self.engine = create_engine(settings)

    async def sent(self) -> int:
        async with self.engine.connect() as connection:
            count = await connection.scalar(
                select(func.count())
                .select_from(Notification)
                .where(Notification.status == NotificationStatus.SENT)
            )
            return int(count or 0)

    async def worker_ready(self) -> bool:
        async with AsyncSession(self.engine) as session:
            return await last_heartbeat(session, BEAT_HEARTBEAT) is not None

    async def close(self) -> None:
        await self.engine.dispose()


def worker_cpu_seconds(group: int) -> float:
    """User and system time of the worker's processes (the main one and its pool), Linux."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state, ppid, pgrp, ...; utime and stime are fields 14 and 15.
        if int(fields[2]) == group:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


async def measure(
    settings: Settings, worker: subprocess.Popen[bytes], emails: int
) -> tuple[float, float, float]:
    """Seconds from the dispatch task to the last row sent, and the CPU seconds meanwhile of
    the worker and of this process (the SMTP server and the progress polls)."""
    progress = Progress(settings)
    try:
        create_celery_app(settings).send_task(BEAT_HEARTBEAT_TASK)
        deadline = time.monotonic() + 120
        while not await progress.worker_ready():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the worker did not start")
            await asyncio.sleep(0.2)
        if await progress.sent():
            raise SystemExit("rows were sent before the dispatch task: the run is not valid")
        cpu_before = worker_cpu_seconds(worker.pid)
        own_before = time.process_time()
        started = time.perf_counter()
        create_celery_app(settings).send_task(DISPATCH_NOTIFICATIONS_TASK, queue="reminders")
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while await progress.sent() < emails:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the worker stopped or timed out before sending everything")
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        return (
            elapsed,
            worker_cpu_seconds(worker.pid) - cpu_before,
            time.process_time() - own_before,
        )
    finally:
        await progress.close()


def one_run(args: argparse.Namespace, run: int) -> float:
    database = f"metricis_bench_notify_{os.getpid()}_{run}"
    with tempfile.TemporaryDirectory() as scratch, smtp_server() as (port, counter):
        storage = Path(scratch) / "storage"
        if args.database == "postgres":
            asyncio.run(create_database(database))
            url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
        else:
            url = f"sqlite+aiosqlite:///{Path(scratch) / 'bench.db'}"
        env = {
            "DATABASE_URL": url,
            "STORAGE_DIR": str(storage),
            "ENVIRONMENT": "test",
            "LOG_LEVEL": "warning",
            "EMAIL_BACKEND": "smtp",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(port),
            "EMAIL_FROM": "Metricis <no-reply@metricis.example.org>",
            "NOTIFICATION_BATCH_SIZE": str(args.batch_size),
            "NOTIFICATION_SEND_CONCURRENCY": str(args.concurrency),
            # No quiet hours: the run happens whenever it is started.
            "NOTIFICATION_QUIET_HOURS_START": "00:00",
            "NOTIFICATION_QUIET_HOURS_END": "00:00",
        }
        if args.broker == "redis":
            env["CELERY_BROKER_URL"] = args.redis_url
            # The benchmark's own database number: no message of an earlier run may start this
            # one's work before the clock does.
            redis.Redis.from_url(args.redis_url).flushdb()
        settings = Settings.model_validate(env)
        worker: subprocess.Popen[bytes] | None = None
        try:
            subprocess.run(
                [METRICIS, "db", "upgrade"],
                cwd=SERVER_ROOT,
                env={**os.environ, **env},
                check=True,
                capture_output=True,
            )
            asyncio.run(prepare(settings, args.emails))
            prepare_embedded_broker(settings)
            worker = subprocess.Popen(
                [METRICIS, "worker", "--queues", "reminders", "--concurrency", "1"],
                cwd=SERVER_ROOT,
                env={**os.environ, **env},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            elapsed, cpu, own_cpu = asyncio.run(measure(settings, worker, args.emails))
        finally:
            if worker is not None and worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(timeout=60)
            if args.database == "postgres":
                asyncio.run(drop_database(database))
        received = len(counter.message_ids)
        distinct = len(set(counter.message_ids))
        rate = float(args.emails) / elapsed
        print(
            f"run {run}: {args.emails} emails in {elapsed:.2f} s = {rate:.0f} emails/s; "
            f"CPU per email: worker {1000 * cpu / args.emails:.2f} ms, SMTP server "
            f"{1000 * own_cpu / args.emails:.2f} ms; SMTP server received "
            f"{received} ({distinct} distinct Message-IDs); load average "
            f"{os.getloadavg()[0]:.1f}",
            flush=True,
        )
        if received != args.emails or distinct != args.emails:
            raise SystemExit("the SMTP server did not receive every message exactly once")
        return rate


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--emails", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--broker", choices=("redis", "embedded"), default="redis")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/7")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if not 1 <= args.emails <= 100_000:
        raise SystemExit("--emails takes 1 to 100000")
    print(
        f"{args.emails} emails per run, database {args.database}, broker {args.broker}, "
        f"batch {args.batch_size}, {args.concurrency} SMTP connections, "
        f"Python {sys.version.split()[0]}",
        flush=True,
    )
    rates = [one_run(args, run) for run in range(1, args.runs + 1)]
    print(
        f"emails/s: mean {statistics.mean(rates):.0f} (min {min(rates):.0f}, "
        f"max {max(rates):.0f}) over {len(rates)} runs"
    )


if __name__ == "__main__":
    main()
