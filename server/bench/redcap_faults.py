"""REDCap fault run: completed sessions pushed through the outbox to a REDCap emulator that is
down for a while, with a worker SIGKILLed in the middle of pushes. By hand, never in CI.

    python -m bench.redcap_faults [--sessions 1000] [--clients 8] [--down-seconds 30]

Starts the real server (2 API processes, PostgreSQL, Redis as session store and broker), one
Celery worker for the `redcap` queue (2 processes) and beat, and the REDCap emulator of the tests
on 127.0.0.1 (each import held 50 ms, as a real server takes a while). Through the API it
configures REDCap for a study (checked against the emulator), then enrolls participants and
runs each one's session to completion (two tasks, three mapped scores). After a tenth of the
sessions the emulator goes down (connections refused) for `--down-seconds`; after a third, while
pushes are in flight, the worker's whole process group is SIGKILLed and a new worker starts a
second later.

Once every push is delivered it checks and prints: the emulator holds exactly one record per
session, with the values of that session's scores (none missing, none different, none extra);
how many times records were written; every attempt in the log (one row per attempt, as many as
the deliveries count), by outcome. Exits 1 if a check fails. Needs PostgreSQL and Redis on this
machine; creates and drops its own database and empties Redis database 6.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis

from app.services.redcap.mapping import mapped_values
from bench.load import require_loopback
from bench.server import METRICIS, SERVER_ROOT, running_server
from bench.submit import ADMIN_PASSWORD, POSTGRES, create_database, drop_database
from bench.webhook_faults import Worker as WebhookWorker
from bench.webhook_faults import one_session
from tests.redcap.emulator import EmulatedProject, Emulator, metadata_rows

REDIS_URL = "redis://127.0.0.1:6379/6"
TOKEN = "0123456789ABCDEF0123456789ABCDEF"  # noqa: S105 - the emulator's, on 127.0.0.1
TASKS = ["simple-rt", "choice-rt"]
MAPPING = {
    "simple-rt.median_rt": "srt_median",
    "simple-rt.n_responses": "srt_n",
    "choice-rt.mean_rt": "crt_mean",
}
DRAIN_LIMIT_SECONDS = 900.0
IMPORT_DELAY_SECONDS = 0.05

SERVER_SETTINGS = {
    "RATE_LIMIT_ENABLED": "false",
    "SESSION_STORAGE_BACKEND": "redis",
    "REDIS_URL": REDIS_URL,
    "CELERY_BROKER_URL": REDIS_URL,
    "DATABASE_CONNECT_TIMEOUT_SECONDS": "2",
    "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "REDCAP_TIMEOUT_SECONDS": "2",
    "WEBHOOK_TIMEOUT_SECONDS": "1",
    "OUTBOX_LEASE_SECONDS": "5",
    "OUTBOX_SCAN_SECONDS": "1",
    "OUTBOX_RETRY_BASE_SECONDS": "0.5",
    "OUTBOX_RETRY_MAX_SECONDS": "4",
    # Down for 30 s at a 4 s cap is about a dozen failures in a row: nothing should die.
    "OUTBOX_MAX_ATTEMPTS": "40",
}


class Worker(WebhookWorker):
    """`metricis worker` for the redcap queue, in a process group of its own."""

    def start(self) -> None:
        self.process = subprocess.Popen(
            [METRICIS, "worker", "--queues", "redcap", "--concurrency", "2"],
            cwd=SERVER_ROOT,
            env=self.env,
            start_new_session=True,
        )


class SlowEmulator(Emulator):
    """The tests' emulator, each import held a little as a real REDCap takes a while."""

    def _import(self, project: EmulatedProject, values: dict[str, str]) -> Any:
        time.sleep(IMPORT_DELAY_SECONDS)
        return super()._import(project, values)


@dataclass
class Run:
    kill_at: int
    down_at: int
    study_id: str = ""
    sessions_completed: int = 0
    kill_time: asyncio.Event = field(default_factory=asyncio.Event)
    down_time: asyncio.Event = field(default_factory=asyncio.Event)
    kill_at_session: int = 0
    in_flight_at_kill: int = 0
    down_at_session: int = 0
    load_seconds: float = 0.0
    drain_seconds: float = 0.0


async def _json(response: httpx.Response, status: int) -> dict[str, Any]:
    if response.status_code != status:
        raise SystemExit(f"{response.request.url} answered {response.status_code}: {response.text}")
    body: dict[str, Any] = response.json()
    return body


async def prepare(client: httpx.AsyncClient, email: str, emulator: Emulator) -> tuple[str, str]:
    login = await _json(
        await client.post("/api/auth/login", json={"email": email, "password": ADMIN_PASSWORD}),
        200,
    )
    client.headers["Authorization"] = f"Bearer {login['access_token']}"
    study = await _json(
        await client.post(
            "/api/studies",
            json={
                "code": f"RC-{uuid.uuid4().hex[:6].upper()}",
                "name": "REDCap faults",
                "consent_mode": "none",
            },
        ),
        201,
    )
    study_id: str = study["id"]
    await _json(
        await client.post(f"/api/studies/{study_id}/status", json={"status": "active"}), 200
    )
    await _json(
        await client.put(
            f"/api/redcap/{study_id}/config",
            json={
                "api_url": emulator.url,
                "api_token": TOKEN,
                "record_id_field": "record_id",
                "field_mapping": MAPPING,
            },
        ),
        201,
    )
    battery = await _json(
        await client.post(
            "/api/batteries",
            json={
                "study_id": study_id,
                "name": "Two tasks",
                "tasks": [{"module_id": t, "config": {}} for t in TASKS],
            },
        ),
        201,
    )
    return study_id, str(battery["id"])


async def _count(database: str, query: str) -> int:
    connection = await asyncpg.connect(f"{POSTGRES}/{database}")
    try:
        return int(await connection.fetchval(query))
    finally:
        await connection.close()


async def outage(emulator: Emulator, run: Run, seconds: float) -> None:
    await run.down_time.wait()
    run.down_at_session = run.sessions_completed
    emulator.stop()
    print(f"REDCap down after {run.sessions_completed} sessions, for {seconds:g} s")
    await asyncio.sleep(seconds)
    emulator.start()
    print(f"REDCap back after {run.sessions_completed} sessions")


async def kill_mid_push(database: str, worker: Worker, run: Run) -> None:
    await run.kill_time.wait()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        flying = await _count(
            database, "SELECT count(*) FROM outbox_deliveries WHERE status = 'delivering'"
        )
        if flying:
            worker.kill()
            run.kill_at_session, run.in_flight_at_kill = run.sessions_completed, flying
            print(
                f"SIGKILLed the worker after {run.sessions_completed} sessions, {flying} in flight"
            )
            await asyncio.sleep(1.0)
            worker.start()
            return
        await asyncio.sleep(0.02)
    raise SystemExit("no push was in flight for two minutes: nothing to kill in the middle of")


async def drive(
    base_url: str, email: str, database: str, emulator: Emulator, worker: Worker, args: Any
) -> Run:
    require_loopback(base_url)
    run = Run(kill_at=max(1, args.sessions // 3), down_at=max(1, args.sessions // 10))
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        run.study_id, battery_id = await prepare(client, email, emulator)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(args.sessions):
            queue.put_nowait(index)

        async def client_loop() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                await one_session(client, run.study_id, battery_id, index)
                run.sessions_completed += 1
                if run.sessions_completed >= run.down_at:
                    run.down_time.set()
                if run.sessions_completed >= run.kill_at:
                    run.kill_time.set()

        started = time.perf_counter()
        side = [
            asyncio.create_task(outage(emulator, run, args.down_seconds)),
            asyncio.create_task(kill_mid_push(database, worker, run)),
        ]
        await asyncio.gather(*(client_loop() for _ in range(args.clients)))
        run.load_seconds = time.perf_counter() - started
        await asyncio.gather(*side)
    return run


async def drain(database: str, run: Run) -> None:
    started = time.perf_counter()
    while time.perf_counter() - started < DRAIN_LIMIT_SECONDS:
        waiting = await _count(
            database, "SELECT count(*) FROM outbox_deliveries WHERE status <> 'delivered'"
        )
        if waiting == 0:
            run.drain_seconds = time.perf_counter() - started
            return
        await asyncio.sleep(0.5)
    raise SystemExit(f"pushes still waiting after {DRAIN_LIMIT_SECONDS:.0f} s")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def check(database: str, run: Run, emulator: Emulator, sessions: int) -> list[str]:
    connection = await asyncpg.connect(f"{POSTGRES}/{database}")
    try:
        events = await connection.fetch(
            "SELECT payload FROM outbox_events WHERE type = 'session.completed'"
        )
        deliveries = await connection.fetch(
            "SELECT status, attempts, extract(epoch FROM delivered_at - created_at) AS latency"
            " FROM outbox_deliveries WHERE destination = 'redcap'"
        )
        logged = await connection.fetch(
            "SELECT a.outcome FROM outbox_delivery_attempts a"
            " JOIN outbox_deliveries d ON d.id = a.delivery_id WHERE d.destination = 'redcap'"
        )
    finally:
        await connection.close()
    project = emulator.projects[TOKEN]
    expected: dict[str, dict[str, str]] = {}
    for row in events:
        payload = json.loads(row["payload"]) if isinstance(row["payload"], str) else row["payload"]
        expected[payload["participant_code"]] = mapped_values(payload, MAPPING)
    held = {record: values for (record, _event), values in project.records.items()}
    writes = Counter(
        str(row["record_id"]) for rows in project.imports for row in rows if "record_id" in row
    )
    missing = sorted(set(expected) - set(held))
    extra = sorted(set(held) - set(expected))
    different = sorted(code for code in expected if code in held and held[code] != expected[code])
    counted = sum(int(row["attempts"]) for row in deliveries)
    latencies = [float(row["latency"]) for row in deliveries if row["latency"] is not None]
    figures = {
        "sessions completed": run.sessions_completed,
        "load seconds": round(run.load_seconds, 1),
        "REDCap down after session": run.down_at_session,
        "worker SIGKILLed after session": run.kill_at_session,
        "pushes in flight at the kill": run.in_flight_at_kill,
        "seconds from the end of the load to every push delivered": round(run.drain_seconds, 1),
        "session.completed events": len(events),
        "pushes by status": dict(Counter(str(row["status"]) for row in deliveries)),
        "records in REDCap": len(held),
        "records missing / extra / with other values": [len(missing), len(extra), len(different)],
        "records by number of times written": dict(sorted(Counter(writes.values()).items())),
        "attempt rows (log)": len(logged),
        "attempts counted on the pushes": counted,
        "attempts by outcome": dict(Counter(str(row["outcome"]) for row in logged)),
        "imports REDCap accepted": len(project.imports),
        "push latency p50 / p99 / max s": [
            round(_percentile(latencies, 0.5), 2),
            round(_percentile(latencies, 0.99), 2),
            round(max(latencies), 2),
        ],
        "mean attempts per push": round(statistics.fmean(r["attempts"] for r in deliveries), 2),
    }
    for name, value in figures.items():
        print(f"  {name}: {json.dumps(value)}")
    failures = []
    if len(events) != sessions or len(deliveries) != sessions:
        failures.append(f"{len(events)} events and {len(deliveries)} pushes for {sessions}")
    if missing or extra or different:
        failures.append(
            f"records missing {missing[:5]}, extra {extra[:5]}, different {different[:5]}"
        )
    if any(str(row["status"]) != "delivered" for row in deliveries):
        failures.append("pushes not delivered")
    if len(logged) != counted:
        failures.append(f"{len(logged)} attempt rows, {counted} counted on the pushes")
    if any(str(row["outcome"]) == "in_progress" for row in logged):
        failures.append("attempts still in progress")
    if not any(str(row["outcome"]) == "connection_error" for row in logged):
        failures.append("no attempt met REDCap down")
    if not any(str(row["outcome"]) == "interrupted" for row in logged):
        failures.append("no attempt was interrupted: the kill did not land mid-push")
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--down-seconds", type=float, default=30.0)
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    args = parser.parse_args()
    database = f"metricis_redcap_faults_{os.getpid()}"
    asyncio.run(create_database(database))
    redis.Redis.from_url(REDIS_URL).flushdb()
    emulator = SlowEmulator(
        EmulatedProject(token=TOKEN, fields=metadata_rows(["record_id", *MAPPING.values()]))
    ).start()
    failures: list[str] = []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            storage = Path(scratch) / "storage"
            storage.mkdir()
            env = {
                **SERVER_SETTINGS,
                "DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}",
                "STORAGE_DIR": str(storage),
            }
            email = f"redcap-{uuid.uuid4().hex[:8]}@example.org"
            with running_server(
                env, workers=2, admin=(email, ADMIN_PASSWORD), port=args.port
            ) as base_url:
                process_env = {**os.environ, **env, "LOG_LEVEL": "warning"}
                worker = Worker(process_env)
                beat = subprocess.Popen([METRICIS, "beat"], cwd=SERVER_ROOT, env=process_env)
                try:
                    run = asyncio.run(drive(base_url, email, database, emulator, worker, args))
                    asyncio.run(drain(database, run))
                    print(f"REDCap faults, {args.sessions} sessions:")
                    failures = asyncio.run(check(database, run, emulator, args.sessions))
                finally:
                    beat.terminate()
                    beat.wait(timeout=30)
                    worker.stop()
    finally:
        emulator.stop()
        asyncio.run(drop_database(database))
        redis.Redis.from_url(REDIS_URL).flushdb()
    for failure in failures:
        print(f"FAILED: {failure}")
    if failures:
        raise SystemExit(1)
    print("every session in REDCap once, with its values; every attempt accounted for")


if __name__ == "__main__":
    main()
