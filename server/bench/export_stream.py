"""The direct streamed trials CSV against `psql \\copy` of the same rows, and the API's memory.

    python -m bench.export_stream [--trials 1000000] [--sessions 1000] [--runs 3]

Creates its own PostgreSQL database, serves it with one `metricis serve` worker, writes one study
of `--sessions` sessions holding `--trials` trials in all (COPY), then, `--runs` times each and
in turn: downloads `GET /api/exports/studies/{id}/trials.csv` over HTTP to a file, and runs
`psql -c "\\copy (<the same query>) TO <file> WITH CSV HEADER"` (the query the API runs, with
its values inlined). Prints the times, the sizes and rows of both files, and the resident memory
of the server's processes after a warm-up request and at the peak during the downloads (sampled
every 50 ms from /proc). Drops the database at the end. Needs PostgreSQL on 127.0.0.1:5432 and psql.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.dialects import postgresql

from app.services.exports.scope import ExportFilters, ExportScope
from app.services.exports.streaming import copy_statement
from bench.server import running_server_process
from bench.submit import POSTGRES, create_database, drop_database

ADMIN_PASSWORD = "Quartz-Harbor-Lattice-91!"  # noqa: S105 - a throwaway local database


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=1_000_000)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    return parser.parse_args()


async def populate(dsn: str, sessions: int, trials: int) -> uuid.UUID:
    now = datetime.now(UTC)
    connection = await asyncpg.connect(dsn)
    try:

        async def copy(table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
            await connection.copy_records_to_table(table, records=rows, columns=columns)

        study_id, site_id = uuid.uuid4(), uuid.uuid4()
        battery_id, version_id = uuid.uuid4(), uuid.uuid4()
        await copy(
            "studies",
            ["id", "code", "name", "status", "config", "supported_languages", "consent_mode"],
            [(study_id, "EXPORT-BENCH", "Export benchmark", "active", "{}", '["en"]', "none")],
        )
        await copy(
            "study_sites",
            ["id", "study_id", "code", "name", "timezone"],
            [(site_id, study_id, "S1", "Site 1", "UTC")],
        )
        await copy(
            "batteries",
            ["id", "study_id", "name", "current_version"],
            [(battery_id, study_id, "Main", 1)],
        )
        await copy(
            "battery_versions",
            ["id", "battery_id", "version", "name", "tasks", "created_at"],
            [(version_id, battery_id, 1, "Main", '[{"module_id": "flanker", "config": {}}]', now)],
        )
        people = [uuid.uuid4() for _ in range(sessions)]
        await copy(
            "participants",
            [
                "id",
                "study_id",
                "participant_code",
                "site_id",
                "status",
                "actor",
                "language",
                "timezone",
            ],
            [
                (person, study_id, f"X{index:05d}", site_id, "enrolled", "patient", "en", "UTC")
                for index, person in enumerate(people)
            ],
        )
        session_ids = [uuid.uuid4() for _ in range(sessions)]
        await copy(
            "assessment_sessions",
            [
                "id",
                "study_id",
                "participant_id",
                "battery_id",
                "battery_version_id",
                "battery_version",
                "status",
                "started_at",
                "expires_at",
            ],
            [
                (
                    session_ids[index],
                    study_id,
                    people[index],
                    battery_id,
                    version_id,
                    1,
                    "completed",
                    now - timedelta(days=index % 300),
                    now,
                )
                for index in range(sessions)
            ],
        )
        per_session = trials // sessions
        batch: list[tuple[Any, ...]] = []
        columns = [
            "study_id",
            "participant_id",
            "session_id",
            "task",
            "trial_index",
            "rt",
            "correct",
            "response",
            "stimulus",
            "condition",
            "is_practice",
        ]
        for index in range(sessions):
            for trial in range(per_session):
                batch.append(
                    (
                        study_id,
                        people[index],
                        session_ids[index],
                        "flanker",
                        trial,
                        250.0 + (trial * 37 + index) % 400,
                        trial % 7 != 0,
                        "left" if trial % 2 else "right",
                        f"s{trial % 12}",
                        "congruent" if trial % 3 else "incongruent",
                        False,
                    )
                )
            if len(batch) >= 100_000:
                await copy("trials", columns, batch)
                batch = []
        if batch:
            await copy("trials", columns, batch)
        await connection.execute("ANALYZE")
        return study_id
    finally:
        await connection.close()


def _tree(pid: int) -> list[int]:
    found = [pid]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) in found:
            found.append(int(entry.name))
    return found


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class MemorySampler:
    """The resident memory of each process of the server, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pids = _tree(pid)
        self.baseline = {p: _rss_mb(p) for p in self.pids}
        self.peak = dict(self.baseline)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], _rss_mb(pid))
            time.sleep(0.05)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def growth(self) -> dict[int, tuple[float, float]]:
        return {pid: (self.baseline[pid], self.peak[pid]) for pid in self.pids}


def stream(
    base_url: str,
    email: str,
    study_id: uuid.UUID,
    target: Path,
    params: dict[str, str] | None = None,
) -> float:
    with httpx.Client(base_url=base_url, timeout=600) as client:
        login = client.post("/api/auth/login", json={"email": email, "password": ADMIN_PASSWORD})
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        started = time.perf_counter()
        with (
            client.stream(
                "GET",
                f"/api/exports/studies/{study_id}/trials.csv",
                headers=headers,
                params=params,
            ) as response,
            target.open("wb") as handle,
        ):
            response.raise_for_status()
            for chunk in response.iter_raw():
                handle.write(chunk)
        return time.perf_counter() - started


def psql_copy(database: str, study_id: uuid.UUID, target: Path) -> float:
    statement = copy_statement(ExportScope(study_id, ExportFilters()), spreadsheet_safe=True)
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    command = f"\\copy ({' '.join(sql.split())}) TO '{target}' WITH CSV HEADER"
    started = time.perf_counter()
    subprocess.run(
        ["psql", "-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-c", command],
        check=True,
    )
    return time.perf_counter() - started


def _lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def main() -> None:
    args = parse_args()
    database = f"metricis_bench_export_{os.getpid()}"
    asyncio.run(create_database(database))
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
    try:
        with tempfile.TemporaryDirectory() as scratch:
            env = {
                "DATABASE_URL": url,
                "STORAGE_DIR": str(Path(scratch) / "storage"),
                "RATE_LIMIT_ENABLED": "false",
            }
            email = f"bench-{uuid.uuid4().hex[:8]}@example.org"
            admin = (email, ADMIN_PASSWORD)
            with running_server_process(env, workers=1, admin=admin) as (base_url, pid):
                started = time.perf_counter()
                study_id = asyncio.run(
                    populate(f"{POSTGRES}/{database}", args.sessions, args.trials)
                )
                print(f"{args.trials} trials written in {time.perf_counter() - started:.1f} s")
                api_file, psql_file = Path(scratch) / "api.csv", Path(scratch) / "psql.csv"
                api_times: list[float] = []
                psql_times: list[float] = []
                # A first request warms the server up (connections, first-use imports): the
                # memory baseline is taken after it.
                stream(base_url, email, study_id, api_file, {"task": "warm-up"})
                with MemorySampler(pid) as memory:
                    for _ in range(args.runs):
                        api_times.append(stream(base_url, email, study_id, api_file))
                        psql_times.append(psql_copy(database, study_id, psql_file))
                api_median = statistics.median(api_times)
                psql_median = statistics.median(psql_times)
                print(
                    f"API stream : {', '.join(f'{t:.2f}' for t in api_times)} s "
                    f"(median {api_median:.2f} s), {api_file.stat().st_size / 1e6:.1f} MB, "
                    f"{_lines(api_file) - 1} rows"
                )
                print(
                    f"psql \\copy: {', '.join(f'{t:.2f}' for t in psql_times)} s "
                    f"(median {psql_median:.2f} s), {psql_file.stat().st_size / 1e6:.1f} MB, "
                    f"{_lines(psql_file) - 1} rows"
                )
                print(f"ratio API / psql (medians): {api_median / psql_median:.2f}")
                for process, (before, peak) in memory.growth().items():
                    print(
                        f"server process {process}: RSS {before:.0f} MB before, "
                        f"peak {peak:.0f} MB during ({peak - before:+.0f} MB)"
                    )
    finally:
        asyncio.run(drop_database(database))


if __name__ == "__main__":
    main()
