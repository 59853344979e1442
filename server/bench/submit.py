"""Submission benchmark (issue: assessments at COPY speed).

    python -m bench.submit [--clients 16] [--seconds 20] [--trials 500] [--runs 3]

Starts the real server (2 uvicorn workers, PostgreSQL, Redis session store), creates a study, a
battery of ten tasks, participants and sessions through the API, and drives POST /api/submit
with first-time 500-trial tasks from concurrent clients on 127.0.0.1, bounded in time and
requests. In the same run it drives the baseline app (bench/baseline_app.py: same validation,
same COPY) under the same load, and prints throughput, p50/p99 and the ratio. It also times body
validation alone. Needs PostgreSQL and Redis on this machine; creates and drops its own database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from app.schemas.assessments import SubmitRequest
from bench.baseline_app import prepare_table
from bench.cpu import backend_pids, pids_cpu_seconds, process_cpu_seconds, tree_cpu_seconds
from bench.load import LoadResult, run_load
from bench.server import SERVER_ROOT, free_port, running_server_process

ADMIN_PASSWORD = "Quartz-Harbor-Lattice-91!"  # noqa: S105 - a throwaway local database
TASKS = [
    "simple-rt",
    "choice-rt",
    "cpt-go-nogo",
    "flanker",
    "stroop",
    "vigilance-cpt",
    "divided-attention",
    "digit-symbol-coding",
    "pattern-separation",
    "emotion-recognition",
]
POSTGRES = "postgresql://postgres@127.0.0.1:5432"


def trials_for(task: str, count: int, seed: int) -> list[dict[str, object]]:
    return [
        {
            "task": task,
            "trial_index": index,
            "rt": 250.0 + ((index * 37 + seed) % 400),
            "correct": (index + seed) % 7 != 0,
            "response": "left" if index % 2 else "right",
            "stimulus": f"s{index % 12}",
            "condition": "congruent" if index % 3 else "incongruent",
        }
        for index in range(count)
    ]


def body_for(session_id: str, task: str, count: int, seed: int) -> bytes:
    return json.dumps(
        {"session_id": session_id, "trials": trials_for(task, count, seed)},
        separators=(",", ":"),
    ).encode()


def validation_cost_ms(count: int) -> float:
    body = body_for(str(uuid.uuid4()), "simple-rt", count, 1)
    timings = []
    for _ in range(200):
        started = time.perf_counter()
        SubmitRequest.model_validate_json(body)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


async def create_database(name: str) -> None:
    connection = await asyncpg.connect(f"{POSTGRES}/postgres")
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def drop_database(name: str) -> None:
    connection = await asyncpg.connect(f"{POSTGRES}/postgres")
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def prepare_sessions(
    base_url: str, email: str, sessions_needed: int
) -> tuple[dict[str, str], list[str]]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        login = await client.post(
            "/api/auth/login", json={"email": email, "password": ADMIN_PASSWORD}
        )
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        study = await client.post(
            "/api/studies",
            headers=headers,
            json={
                "code": f"BENCH-{uuid.uuid4().hex[:6].upper()}",
                "name": "Bench",
                "consent_mode": "none",
            },
        )
        study.raise_for_status()
        study_id = study.json()["id"]
        (
            await client.post(
                f"/api/studies/{study_id}/status", headers=headers, json={"status": "active"}
            )
        ).raise_for_status()
        battery = await client.post(
            "/api/batteries",
            headers=headers,
            json={
                "study_id": study_id,
                "name": "Bench",
                "tasks": [{"module_id": t, "config": {}} for t in TASKS],
            },
        )
        battery.raise_for_status()
        battery_id = battery.json()["id"]
        session_ids: list[str] = []
        semaphore = asyncio.Semaphore(8)

        async def one(index: int) -> None:
            async with semaphore:
                participant = await client.post(
                    "/api/participants",
                    headers=headers,
                    json={"study_id": study_id, "participant_id": f"B{index:05d}"},
                )
                participant.raise_for_status()
                started = await client.post(
                    "/api/session/start",
                    headers=headers,
                    json={"participant_id": participant.json()["id"], "battery_id": battery_id},
                )
                started.raise_for_status()
                session_ids.append(started.json()["session_id"])

        await asyncio.gather(*(one(i) for i in range(sessions_needed)))
    return headers, session_ids


def submission_bodies(session_ids: list[str], trials: int) -> list[tuple[str, bytes]]:
    bodies = []
    for task in TASKS:
        for seed, session_id in enumerate(session_ids):
            bodies.append((session_id, body_for(session_id, task, trials, seed)))
    return bodies


async def drive(
    name: str,
    base_url: str,
    path: str,
    bodies: list[tuple[str, bytes]],
    headers: dict[str, str],
    args: argparse.Namespace,
) -> LoadResult:
    async def send(client: httpx.AsyncClient, index: int) -> httpx.Response:
        session_id, body = bodies[index]
        return await client.post(
            path,
            content=body,
            headers={"content-type": "application/json", "X-Session-ID": session_id},
        )

    return await run_load(
        name,
        base_url,
        send,
        clients=args.clients,
        max_requests=len(bodies),
        max_seconds=args.seconds,
        headers=headers,
    )


@dataclass(frozen=True)
class CpuPerRequest:
    app_ms: float  # the server's processes (every worker), per request answered
    postgres_ms: float  # the PostgreSQL backends of the benchmark's database, per request

    def summary(self) -> str:
        return f"CPU per request: app {self.app_ms:.1f} ms, PostgreSQL {self.postgres_ms:.1f} ms"


def measured(
    server_pid: int, database: str, load: Coroutine[Any, Any, LoadResult]
) -> tuple[LoadResult, CpuPerRequest]:
    """Run `load` (the coroutine driving the requests); the CPU per request it cost the
    server's process tree and the database's backends."""
    dsn = f"{POSTGRES}/{database}"
    backends_before = {
        pid: process_cpu_seconds(pid) for pid in asyncio.run(backend_pids(dsn, database))
    }
    app_before = tree_cpu_seconds(server_pid)
    result = asyncio.run(load)
    app_after = tree_cpu_seconds(server_pid)
    backends_after = asyncio.run(backend_pids(dsn, database))
    postgres = pids_cpu_seconds(backends_after) - sum(
        cpu for pid, cpu in backends_before.items() if pid in backends_after
    )
    count = max(result.requests, 1)
    return result, CpuPerRequest((app_after - app_before) * 1000 / count, postgres * 1000 / count)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=800, help="sessions per run (x10 tasks)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/7")
    return parser.parse_args()


def baseline_run(
    args: argparse.Namespace, database: str, session_ids: list[str]
) -> tuple[LoadResult, CpuPerRequest]:
    dsn = f"{POSTGRES}/{database}"
    asyncio.run(prepare_table(dsn))
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.baseline_app:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "2", "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=SERVER_ROOT, env={**os.environ, "BASELINE_DSN": dsn})
    base_url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.post(f"{base_url}/submit", content=b"{}", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        bodies = submission_bodies(session_ids, args.trials)
        return measured(
            process.pid,
            database,
            drive("baseline (validate + COPY)", base_url, "/submit", bodies, {}, args),
        )
    finally:
        process.terminate()
        process.wait(timeout=15)


def main() -> None:
    args = parse_args()
    cost = validation_cost_ms(args.trials)
    print(f"body validation, {args.trials} trials: {cost:.3f} ms (median of 200)")
    results: list[tuple[LoadResult, LoadResult]] = []
    for run in range(1, args.runs + 1):
        database = f"metricis_bench_{os.getpid()}_{run}"
        asyncio.run(create_database(database))
        try:
            with tempfile.TemporaryDirectory() as scratch:
                env = {
                    "DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}",
                    "STORAGE_DIR": str(Path(scratch) / "storage"),
                    "RATE_LIMIT_ENABLED": "false",
                    "SESSION_STORAGE_BACKEND": "redis",
                    "REDIS_URL": args.redis_url,
                    "DATABASE_POOL_SIZE": "10",
                }
                email = f"bench-{uuid.uuid4().hex[:8]}@example.org"
                with running_server_process(env, workers=2, admin=(email, ADMIN_PASSWORD)) as (
                    base_url,
                    server_pid,
                ):
                    headers, session_ids = asyncio.run(
                        prepare_sessions(base_url, email, args.sessions)
                    )
                    bodies = submission_bodies(session_ids, args.trials)
                    server, server_cpu = measured(
                        server_pid,
                        database,
                        drive(
                            "metricis POST /api/submit",
                            base_url,
                            "/api/submit",
                            bodies,
                            headers,
                            args,
                        ),
                    )
            baseline, baseline_cpu = baseline_run(args, database, session_ids)
        finally:
            asyncio.run(drop_database(database))
        print(f"run {run}: {server.summary()}")
        print(f"run {run}: metricis {server_cpu.summary()}")
        print(f"run {run}: {baseline.summary()}")
        print(f"run {run}: baseline {baseline_cpu.summary()}")
        print(f"run {run}: load average {os.getloadavg()[0]:.2f}")
        ratio = server.throughput / baseline.throughput
        trials_per_second = server.throughput * args.trials
        print(f"run {run}: ratio {ratio:.2f}, trials/s {trials_per_second:.0f}")
        results.append((server, baseline))
    throughputs = [s.throughput for s, _ in results]
    ratios = [s.throughput / b.throughput for s, b in results]
    worst_p99 = max(server.percentile(0.99) for server, _ in results)
    print(
        f"metricis: {statistics.mean(throughputs):.0f}/s "
        f"(min {min(throughputs):.0f}, max {max(throughputs):.0f}); p99 max {worst_p99:.1f} ms; "
        f"ratio to baseline {statistics.mean(ratios):.2f} "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f})"
    )


if __name__ == "__main__":
    main()
