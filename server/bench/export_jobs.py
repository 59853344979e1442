"""Export jobs of one big study in each format: wall time and peak memory of the worker.

    python -m bench.export_jobs [--participants 200] [--visits 4] [--trials 200000]
                                [--jobs trials:csv,trials:json,trials:parquet,trials:bids,...]

Creates its own PostgreSQL database (migrated with `metricis db upgrade`), writes one study with
COPY: `--participants` participants on two sites, each with `--visits` visits of one schedule
event (`visit`, occurrences 1..n) and one session per visit, every tenth participant with one
more, unscheduled, session; each session runs two tasks (flanker, simple-rt) with a scored task
result; `--trials` trials in all, spread evenly (1,000,000 with 200 participants and 4 visits
gives about 1,190 trials per task and session). Then, for each `dataset:format` of `--jobs`
in turn, queues one export job and runs it in a fresh child process (the function the
`exports` Celery task calls), and prints the child's wall time for the job, its peak resident
memory (`ru_maxrss` from `wait4`), the rows and the file's size, with the machine's load
(`uptime`) before and after. A first child with no job gives the baseline memory of a worker
that imported the application. Drops the database at the end. Needs PostgreSQL on
127.0.0.1:5432. Run by hand, never as a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench.dashboard import copy, uptime
from bench.server import METRICIS, SERVER_ROOT
from bench.submit import POSTGRES, create_database, drop_database

TASKS = ("flanker", "simple-rt")
DEFAULT_JOBS = "trials:csv,trials:json,trials:parquet,trials:bids,summaries:csv,summaries:parquet"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--visits", type=int, default=4)
    parser.add_argument("--trials", type=int, default=200_000, help="in all, about")
    parser.add_argument("--jobs", default=DEFAULT_JOBS, help="dataset:format, comma-separated")
    parser.add_argument("--run-queued", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


async def populate(dsn: str, args: argparse.Namespace) -> uuid.UUID:
    now = datetime.now(UTC)
    connection = await asyncpg.connect(dsn)
    try:
        study_id, battery_id, version_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        await copy(
            connection,
            "studies",
            ("id", "code", "name", "status", "config", "supported_languages", "consent_mode"),
            [(study_id, "EXPORT-JOBS", "Export jobs benchmark", "active", "{}", '["en"]', "none")],
        )
        sites = [uuid.uuid4(), uuid.uuid4()]
        await copy(
            connection,
            "study_sites",
            ("id", "study_id", "code", "name", "timezone"),
            [(site, study_id, f"S{i}", f"Site {i}", "UTC") for i, site in enumerate(sites)],
        )
        await copy(
            connection,
            "batteries",
            ("id", "study_id", "name", "current_version"),
            [(battery_id, study_id, "Main", 1)],
        )
        modules = json.dumps([{"module_id": task, "config": {}} for task in TASKS])
        await copy(
            connection,
            "battery_versions",
            ("id", "battery_id", "version", "name", "tasks", "created_at"),
            [(version_id, battery_id, 1, "Main", modules, now)],
        )
        schedule_id, schedule_version_id, event_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        await copy(
            connection,
            "schedules",
            ("id", "study_id", "current_version"),
            [(schedule_id, study_id, 1)],
        )
        await copy(
            connection,
            "schedule_versions",
            ("id", "schedule_id", "version", "name", "created_at"),
            [(schedule_version_id, schedule_id, 1, "Plan", now)],
        )
        await copy(
            connection,
            "schedule_events",
            (
                "id",
                "schedule_version_id",
                "position",
                "key",
                "label",
                "anchor",
                "offset_days",
                "window_before_days",
                "window_after_days",
                "battery_id",
                "repeat_every_days",
                "repeat_count",
                "reminders",
            ),
            [
                (
                    event_id,
                    schedule_version_id,
                    0,
                    "visit",
                    "Visit",
                    "enrollment_date",
                    0,
                    0,
                    6,
                    battery_id,
                    30,
                    args.visits,
                    "[]",
                )
            ],
        )
        people = [uuid.uuid4() for _ in range(args.participants)]
        await copy(
            connection,
            "participants",
            (
                "id",
                "study_id",
                "participant_code",
                "site_id",
                "status",
                "actor",
                "language",
                "timezone",
            ),
            [
                (person, study_id, f"BX-{i:04d}", sites[i % 2], "enrolled", "patient", "en", "UTC")
                for i, person in enumerate(people)
            ],
        )
        first = now - timedelta(days=30 * args.visits)
        visits: list[tuple[Any, ...]] = []
        sessions: list[tuple[Any, ...]] = []
        for index, person in enumerate(people):
            for occurrence in range(1, args.visits + 1):
                opens = first + timedelta(days=30 * (occurrence - 1))
                visit_id = uuid.uuid4()
                visits.append(
                    (
                        visit_id,
                        study_id,
                        person,
                        schedule_id,
                        1,
                        event_id,
                        "visit",
                        occurrence,
                        f"Visit {occurrence}",
                        battery_id,
                        "enrollment_date",
                        first.date(),
                        "UTC",
                        opens.date(),
                        opens.date(),
                        (opens + timedelta(days=6)).date(),
                        opens,
                        opens,
                        opens + timedelta(days=7),
                        "completed",
                    )
                )
                started = opens + timedelta(hours=index % 24)
                sessions.append((uuid.uuid4(), person, visit_id, started))
            if index % 10 == 0:
                sessions.append((uuid.uuid4(), person, None, now - timedelta(days=1)))
        await copy(
            connection,
            "visits",
            (
                "id",
                "study_id",
                "participant_id",
                "schedule_id",
                "schedule_version",
                "schedule_event_id",
                "event_key",
                "occurrence",
                "label",
                "battery_id",
                "anchor",
                "anchor_date",
                "timezone",
                "due_date",
                "window_start_date",
                "window_end_date",
                "due_at",
                "window_opens_at",
                "window_closes_at",
                "status",
            ),
            visits,
        )
        await copy(
            connection,
            "assessment_sessions",
            (
                "id",
                "study_id",
                "participant_id",
                "visit_id",
                "battery_id",
                "battery_version_id",
                "battery_version",
                "status",
                "started_at",
                "expires_at",
                "ended_at",
            ),
            [
                (
                    session_id,
                    study_id,
                    person,
                    visit_id,
                    battery_id,
                    version_id,
                    1,
                    "completed",
                    started,
                    started + timedelta(hours=4),
                    started + timedelta(minutes=15),
                )
                for session_id, person, visit_id, started in sessions
            ],
        )
        per_task = max(1, args.trials // (len(sessions) * len(TASKS)))
        results = [
            (
                uuid.uuid4(),
                session_id,
                task,
                "0" * 64,
                f"sources/{session_id}/{task}.json",
                "0" * 64,
                1000,
                per_task,
                json.dumps({"median_rt": 412.5, "accuracy": 0.93, "n_trials": per_task}),
                "[]",
                task,
                "1.0.0",
                "[]",
                started + timedelta(minutes=15),
                started + timedelta(minutes=15),
            )
            for session_id, _, _, started in sessions
            for task in TASKS
        ]
        await copy(
            connection,
            "task_results",
            (
                "id",
                "session_id",
                "task",
                "content_hash",
                "source_path",
                "source_sha256",
                "source_bytes",
                "n_trials",
                "scores",
                "flags",
                "scorer",
                "scorer_version",
                "previous_scores",
                "accepted_at",
                "completed_at",
            ),
            results,
        )
        columns = (
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
        )
        batch: list[tuple[Any, ...]] = []
        for number, (session_id, person, _, _) in enumerate(sessions):
            for task in TASKS:
                for trial in range(per_task):
                    batch.append(
                        (
                            study_id,
                            person,
                            session_id,
                            task,
                            trial,
                            250.0 + (trial * 37 + number) % 400 if trial % 50 else None,
                            trial % 7 != 0,
                            "left" if trial % 2 else "right",
                            f"s{trial % 12}",
                            ("congruent" if trial % 3 else "incongruent")
                            if task == "flanker"
                            else None,
                            trial < 3,
                        )
                    )
                if len(batch) >= 100_000:
                    await copy(connection, "trials", columns, batch)
                    batch = []
        if batch:
            await copy(connection, "trials", columns, batch)
        await connection.execute("ANALYZE")
        total = await connection.fetchval("SELECT count(*) FROM trials")
        print(
            f"{args.participants} participants, {len(sessions)} sessions, {total} trials "
            f"({per_task} per task and session)"
        )
        return study_id
    finally:
        await connection.close()


async def queue_job(dsn: str, study_id: uuid.UUID, dataset: str, file_format: str) -> uuid.UUID:
    now = datetime.now(UTC)
    job_id = uuid.uuid4()
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "INSERT INTO export_jobs (id, study_id, format, dataset, filters, "
            "include_contact_details, status, rows_done, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4, '{}', false, 'queued', 0, $5, $5)",
            job_id,
            study_id,
            file_format,
            dataset,
            now,
        )
    finally:
        await connection.close()
    return job_id


async def job_outcome(dsn: str, job_id: uuid.UUID) -> asyncpg.Record:
    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow(
            "SELECT status, rows_total, size_bytes, error FROM export_jobs WHERE id = $1", job_id
        )
        assert row is not None
        return row
    finally:
        await connection.close()


def run_queued() -> None:
    """In the child: run at most one queued job, print the wall time it took as JSON."""
    from app.config import get_settings
    from app.db.session import run_with_sessions
    from app.services.exports.jobs import run_pending_exports

    settings = get_settings()
    started = time.perf_counter()
    report = run_with_sessions(
        settings, lambda sessions: run_pending_exports(sessions, settings, max_jobs=1)
    )
    print(json.dumps({"seconds": time.perf_counter() - started, "report": report}))


def child(env: dict[str, str]) -> tuple[dict[str, Any], float]:
    """Run a child worker: its JSON report and its peak resident memory in MB."""
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.export_jobs", "--run-queued"],
            cwd=SERVER_ROOT,
            env=env,
            stdout=output,
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise RuntimeError(f"the child worker exited with {process.returncode}")
        output.seek(0)
        report: dict[str, Any] = json.loads(output.read().strip().splitlines()[-1])
    return report, usage.ru_maxrss / 1024  # KB on Linux


def main() -> None:
    args = parse_args()
    if args.run_queued:
        run_queued()
        return
    database = f"metricis_bench_export_jobs_{os.getpid()}"
    asyncio.run(create_database(database))
    dsn = f"{POSTGRES}/{database}"
    try:
        with tempfile.TemporaryDirectory() as scratch:
            env = {
                **os.environ,
                "DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}",
                "STORAGE_DIR": str(Path(scratch) / "storage"),
                "LOG_LEVEL": "warning",
            }
            subprocess.run([METRICIS, "db", "upgrade"], cwd=SERVER_ROOT, env=env, check=True)
            started = time.perf_counter()
            study_id = asyncio.run(populate(dsn, args))
            print(f"written and analysed in {time.perf_counter() - started:.1f} s")
            print(f"load before: {uptime()}")
            _, baseline = child(env)
            print(f"baseline worker (no job): peak RSS {baseline:.0f} MB")
            print(f"{'job':<20} {'seconds':>8} {'peak RSS':>9} {'rows':>9} {'zip':>10}")
            for spec in args.jobs.split(","):
                dataset, file_format = spec.strip().split(":")
                job_id = asyncio.run(queue_job(dsn, study_id, dataset, file_format))
                report, peak = child(env)
                outcome = asyncio.run(job_outcome(dsn, job_id))
                if outcome["status"] != "ready":
                    print(f"{spec:<20} {outcome['status']}: {outcome['error']}")
                    continue
                print(
                    f"{spec:<20} {report['seconds']:>8.1f} {peak:>6.0f} MB "
                    f"{outcome['rows_total']:>9} {outcome['size_bytes'] / 1e6:>7.1f} MB"
                )
            print(f"load after: {uptime()}")
    finally:
        asyncio.run(drop_database(database))


if __name__ == "__main__":
    main()
