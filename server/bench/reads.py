"""Authenticated reads per API worker, driven by `wrk` (a native load generator).

    python -m bench.reads [--seconds 10] [--runs 3] [--connections 32] [--participants 200]

Starts one `metricis serve` worker on PostgreSQL with the Redis session store, pinned to CPU 0,
and drives it with `wrk` pinned to CPU 1 (on a 2-core machine the load generator then does not
steal the worker's core). Scenarios: /api/health (middleware only), /api/auth/me (a token and
its login session checked), /api/studies and /api/participants (paginated lists, 20 rows).
Each run is bounded by time; prints requests/s per scenario and run, the spread, and the
machine's load average. Needs `wrk` (Debian package `wrk`), PostgreSQL and Redis on this
machine; creates and drops its own database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import uuid
from pathlib import Path

import httpx

from bench.cpu import tree_cpu_seconds
from bench.server import running_server_process
from bench.submit import create_database, drop_database

ADMIN_PASSWORD = "Quartz-Harbor-Lattice-91!"  # noqa: S105 - a throwaway local database
_REQUESTS_PER_SECOND = re.compile(r"Requests/sec:\s+([\d.]+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_REQUESTS = re.compile(r"(\d+) requests in")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/7")
    parser.add_argument(
        "--only", default="", help="run only the scenarios whose path contains this text"
    )
    return parser.parse_args()


async def prepare(base_url: str, email: str, participants: int) -> tuple[str, str]:
    """Sign in, create an active study with `participants` participants; (token, study id)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        login = await client.post(
            "/api/auth/login", json={"email": email, "password": ADMIN_PASSWORD}
        )
        login.raise_for_status()
        token = login.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        study = await client.post(
            "/api/studies",
            json={"code": f"READS-{uuid.uuid4().hex[:6].upper()}", "name": "Read benchmark"},
            headers=headers,
        )
        study.raise_for_status()
        study_id = study.json()["id"]
        rows = "\n".join(f"R{index:04d},en" for index in range(participants))
        imported = await client.post(
            "/api/participants/import",
            data={"study_id": study_id},
            files={"file": ("p.csv", f"participant_id,language\n{rows}\n", "text/csv")},
            headers=headers,
        )
        imported.raise_for_status()
    return token, study_id


def wrk(url: str, token: str, seconds: int, connections: int) -> tuple[float, int, int]:
    """Requests per second, non-2xx responses, requests in all."""
    several_cores = (os.cpu_count() or 1) > 1
    pinned = ["taskset", "-c", "1"] if shutil.which("taskset") and several_cores else []
    result = subprocess.run(
        [
            *pinned,
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    )
    rate = _REQUESTS_PER_SECOND.search(result.stdout)
    errors = _NON_2XX.search(result.stdout)
    total = _REQUESTS.search(result.stdout)
    if rate is None or total is None:
        raise RuntimeError(f"wrk said: {result.stdout}\n{result.stderr}")
    return float(rate.group(1)), int(errors.group(1)) if errors else 0, int(total.group(1))


def main() -> None:
    args = parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    database = f"metricis_reads_{os.getpid()}"
    asyncio.run(create_database(database))
    results: dict[str, list[float]] = {}
    # CPU per request of the server process: it moves less than requests/s when other work
    # shares the machine (not nothing: compare changes in alternating runs). PostgreSQL's share
    # is not counted here: the pool opens and closes connections during a run, so a list of
    # backends taken once misses some. 1000 / ms is the rate one worker reaches on a core of
    # its own.
    cpu_ms: dict[str, list[float]] = {}
    try:
        with tempfile.TemporaryDirectory() as scratch:
            env = {
                "DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}",
                "STORAGE_DIR": str(Path(scratch) / "storage"),
                "RATE_LIMIT_ENABLED": "false",
                "SESSION_STORAGE_BACKEND": "redis",
                "REDIS_URL": args.redis_url,
            }
            email = f"bench-{uuid.uuid4().hex[:8]}@example.org"
            with running_server_process(env, workers=1, admin=(email, ADMIN_PASSWORD), cpu=0) as (
                base_url,
                pid,
            ):
                token, study_id = asyncio.run(prepare(base_url, email, args.participants))
                scenarios = {
                    "GET /api/health": f"{base_url}/api/health",
                    "GET /api/auth/me": f"{base_url}/api/auth/me",
                    "GET /api/studies": f"{base_url}/api/studies?per_page=20",
                    "GET /api/participants": (
                        f"{base_url}/api/participants?study_id={study_id}&per_page=20"
                    ),
                }
                for name, url in scenarios.items():
                    if args.only not in name:
                        continue
                    wrk(url, token, 2, args.connections)  # warm-up
                    for run in range(1, args.runs + 1):
                        app_before = tree_cpu_seconds(pid)
                        rate, errors, total = wrk(url, token, args.seconds, args.connections)
                        app_ms = 1000 * (tree_cpu_seconds(pid) - app_before) / max(total, 1)
                        load = os.getloadavg()[0]
                        print(
                            f"{name} run {run}: {rate:.0f}/s, non-2xx {errors}, "
                            f"CPU per request {app_ms:.2f} ms, "
                            f"load {load:.2f}"
                        )
                        if errors:
                            raise SystemExit(f"{name}: {errors} responses were not 2xx")
                        results.setdefault(name, []).append(rate)
                        cpu_ms.setdefault(name, []).append(app_ms)
    finally:
        asyncio.run(drop_database(database))
    for name, rates in results.items():
        app_cpu = statistics.median(cpu_ms[name])
        print(
            f"{name}: median {statistics.median(rates):.0f}/s per worker "
            f"(min {min(rates):.0f}, max {max(rates):.0f}); CPU per request {app_cpu:.2f} ms "
            f"(= {1000 / app_cpu:.0f}/s on a core of its own)"
        )


if __name__ == "__main__":
    main()
