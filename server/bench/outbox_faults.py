"""Outbox fault run: completed sessions pushed to REDCap and delivered as webhooks through the
outbox while both destinations fail, with a worker SIGKILLed in the middle of deliveries. By
hand, never in CI.

    python -m bench.outbox_faults [--sessions 1000] [--clients 8] [--down-seconds 30]

Starts the real server (2 API processes, PostgreSQL, Redis as session store and broker), one
Celery worker for the `redcap` and `webhooks` queues (2 processes) and beat; the REDCap emulator
of the tests on 127.0.0.1 (each import held 50 ms, as a real server takes a while) and the flaky
webhook receiver of `bench.webhook_faults` (verifies every signature with the snippet of
docs/webhooks.md, answers 500 to one request in three, times out on one in ten). Through the API
it configures REDCap for a study (checked against the emulator) and subscribes the receiver to
participant.enrolled, task.accepted and session.completed; then enrolls participants and runs
each one's session to completion (two tasks, three mapped scores): four events a session, the
session.completed one going to both destinations. After a tenth of the sessions the emulator
goes down (connections refused) for `--down-seconds`; after a third, while deliveries are in
flight, the worker's whole process group is SIGKILLed and a new worker starts a second later.

Once every delivery is delivered it checks and prints, for REDCap: the emulator holds exactly
one record per session, with the values of that session's scores (none missing, none different,
none extra), how many times records were written, every attempt in the log (one row per
attempt, as many as the pushes count); for webhooks, the checks of `bench.webhook_faults`: every
event accepted by the receiver (distinct event ids == events written), every signature verified,
every attempt in the log and consistent with what the receiver saw. Exits 1 if a check fails.
Needs PostgreSQL and Redis on this machine; creates and drops its own database and empties Redis
database 6.
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
from bench.webhook_faults import SERVER_SETTINGS as WEBHOOK_SETTINGS
from bench.webhook_faults import (
    FlakyReceiver,
    Run,
    Worker,
    _json,
    _percentile,
    add_battery,
    check_webhooks,
    drain,
    kill_mid_delivery,
    open_study,
    print_figures,
    run_figures,
    run_sessions,
    subscribe,
)
from tests.redcap.emulator import EmulatedProject, Emulator, metadata_rows

REDIS_URL = "redis://127.0.0.1:6379/6"
TOKEN = "0123456789ABCDEF0123456789ABCDEF"  # noqa: S105 - the emulator's, on 127.0.0.1
MAPPING = {
    "simple-rt.median_rt": "srt_median",
    "simple-rt.n_responses": "srt_n",
    "choice-rt.mean_rt": "crt_mean",
}
IMPORT_DELAY_SECONDS = 0.05

SERVER_SETTINGS = {
    **WEBHOOK_SETTINGS,
    "REDIS_URL": REDIS_URL,
    "CELERY_BROKER_URL": REDIS_URL,
    "REDCAP_TIMEOUT_SECONDS": "2",
    # Longer than the slowest attempt (a REDCap import that times out after 2 s).
    "OUTBOX_LEASE_SECONDS": "5",
    # Down for 30 s at a 4 s cap is about a dozen failures in a row: nothing should die.
    "OUTBOX_MAX_ATTEMPTS": "40",
}


class BothQueuesWorker(Worker):
    queues = "redcap,webhooks"


class SlowEmulator(Emulator):
    """The tests' emulator, each import held a little as a real REDCap takes a while."""

    def _import(self, project: EmulatedProject, values: dict[str, str]) -> Any:
        time.sleep(IMPORT_DELAY_SECONDS)
        return super()._import(project, values)


@dataclass
class FaultsRun(Run):
    down_at: int = 0
    down_time: asyncio.Event = field(default_factory=asyncio.Event)
    down_at_session: int = 0

    def session_done(self) -> None:
        super().session_done()
        if self.sessions_completed >= self.down_at:
            self.down_time.set()


async def configure_redcap(client: httpx.AsyncClient, study_id: str, emulator: Emulator) -> None:
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


async def outage(emulator: Emulator, run: FaultsRun, seconds: float) -> None:
    await run.down_time.wait()
    run.down_at_session = run.sessions_completed
    emulator.stop()
    print(f"REDCap down after {run.sessions_completed} sessions, for {seconds:g} s")
    await asyncio.sleep(seconds)
    emulator.start()
    print(f"REDCap back after {run.sessions_completed} sessions")


async def drive(
    base_url: str,
    email: str,
    database: str,
    emulator: Emulator,
    receiver: FlakyReceiver,
    worker: Worker,
    args: Any,
) -> FaultsRun:
    require_loopback(base_url)
    run = FaultsRun(kill_at=max(1, args.sessions // 3), down_at=max(1, args.sessions // 10))
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        run.study_id = await open_study(client, email, "OUTBOX", "Outbox faults")
        await configure_redcap(client, run.study_id, emulator)
        await subscribe(client, run.study_id, receiver)
        battery_id = await add_battery(client, run.study_id)
        side = [
            outage(emulator, run, args.down_seconds),
            kill_mid_delivery(database, worker, run, patience_seconds=120),
        ]
        await run_sessions(client, run, battery_id, args.sessions, args.clients, side)
    return run


async def check_redcap(
    database: str, emulator: Emulator, sessions: int
) -> tuple[dict[str, Any], list[str], Counter[str]]:
    """The REDCap destination's figures, its failed checks and its attempts by outcome."""
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
    outcomes = Counter(str(row["outcome"]) for row in logged)
    figures = {
        "session.completed events": len(events),
        "pushes by status": dict(Counter(str(row["status"]) for row in deliveries)),
        "records in REDCap": len(held),
        "records missing / extra / with other values": [len(missing), len(extra), len(different)],
        "records by number of times written": dict(sorted(Counter(writes.values()).items())),
        "REDCap attempt rows (log)": len(logged),
        "attempts counted on the pushes": counted,
        "REDCap attempts by outcome": dict(outcomes),
        "imports REDCap accepted": len(project.imports),
        "push latency p50 / p99 / max s": [
            round(_percentile(latencies, 0.5), 2),
            round(_percentile(latencies, 0.99), 2),
            round(max(latencies), 2),
        ],
        "mean attempts per push": round(statistics.fmean(r["attempts"] for r in deliveries), 2),
    }
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
        failures.append(f"{len(logged)} REDCap attempt rows, {counted} counted on the pushes")
    if outcomes["in_progress"]:
        failures.append("REDCap attempts still in progress")
    if not outcomes["connection_error"]:
        failures.append("no attempt met REDCap down")
    return figures, failures, outcomes


async def check(
    database: str, run: FaultsRun, emulator: Emulator, receiver: FlakyReceiver, sessions: int
) -> list[str]:
    """Print the figures of both destinations; answer the failed checks."""
    redcap_figures, redcap_failures, redcap_outcomes = await check_redcap(
        database, emulator, sessions
    )
    hook_figures, hook_failures, hook_outcomes = await check_webhooks(
        database, run.study_id, receiver, sessions
    )
    print_figures({**run_figures(run), "REDCap down after session": run.down_at_session})
    print("  REDCap:")
    print_figures(redcap_figures, indent="    ")
    print("  webhooks:")
    print_figures(hook_figures, indent="    ")
    failures = redcap_failures + hook_failures
    if not (redcap_outcomes["interrupted"] or hook_outcomes["interrupted"]):
        failures.append("no attempt was interrupted: the kill did not land mid-delivery")
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--down-seconds", type=float, default=30.0)
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    args = parser.parse_args()
    database = f"metricis_outbox_faults_{os.getpid()}"
    asyncio.run(create_database(database))
    redis.Redis.from_url(REDIS_URL).flushdb()
    emulator = SlowEmulator(
        EmulatedProject(token=TOKEN, fields=metadata_rows(["record_id", *MAPPING.values()]))
    ).start()
    receiver = FlakyReceiver()
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
            email = f"outbox-{uuid.uuid4().hex[:8]}@example.org"
            with running_server(
                env, workers=2, admin=(email, ADMIN_PASSWORD), port=args.port
            ) as base_url:
                process_env = {**os.environ, **env, "LOG_LEVEL": "warning"}
                worker = BothQueuesWorker(process_env)
                beat = subprocess.Popen([METRICIS, "beat"], cwd=SERVER_ROOT, env=process_env)
                try:
                    run = asyncio.run(
                        drive(base_url, email, database, emulator, receiver, worker, args)
                    )
                    asyncio.run(drain(database, run))
                    print(f"outbox faults, {args.sessions} sessions:")
                    failures = asyncio.run(check(database, run, emulator, receiver, args.sessions))
                finally:
                    beat.terminate()
                    beat.wait(timeout=30)
                    worker.stop()
    finally:
        emulator.stop()
        receiver.stop()
        asyncio.run(drop_database(database))
        redis.Redis.from_url(REDIS_URL).flushdb()
    for failure in failures:
        print(f"FAILED: {failure}")
    if failures:
        raise SystemExit(1)
    print(
        "every session in REDCap once, with its values; every event accepted by the receiver;"
        " every attempt of both destinations accounted for"
    )


if __name__ == "__main__":
    main()
