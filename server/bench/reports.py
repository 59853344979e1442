"""The PDF reports on a big study: time and memory of each report, made by the worker's code.

    python -m bench.reports [--participants 5000] [--sessions 100000]

Creates its own PostgreSQL database and migrates it, writes the dashboard benchmark's study
(bench/dashboard.py: 4 sites, 7 visits per participant, one simple-rt task per session, a tenth
of them flagged) and gives every task scores (median_rt, mean_rt, sd_rt, accuracy) so the
histograms have data. Then it queues a study report and the report of the participant with the
most sessions, runs each in this process with the worker's own function (`run_pending_exports`),
and prints its time, the PDF's size and pages, and the process's resident memory before it and
its peak while it ran. Drops the database at the end. Needs PostgreSQL on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from pypdf import PdfReader
from sqlalchemy import func, select

from app.config import Settings
from app.db.migrations import upgrade
from app.db.session import create_engine, create_sessionmaker
from app.models.assessment import AssessmentSession
from app.models.export import ExportJob, ExportStatus
from app.services.exports.jobs import PARTICIPANT_REPORT, STUDY_REPORT, run_pending_exports
from app.services.file_storage import report_storage
from bench.dashboard import populate
from bench.submit import POSTGRES, create_database, drop_database

SCORES = """
UPDATE task_results SET scores = json_build_object(
    'median_rt', 300 + random() * 200,
    'mean_rt', 320 + random() * 220,
    'sd_rt', 40 + random() * 60,
    'accuracy', 0.7 + random() * 0.3
)
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--participants", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args()


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


def reset_peak() -> float:
    """Reset the process's peak resident memory to the current one (Linux); the current MB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def peak_mb() -> float:
    return _status_mb("VmHWM")


async def run(settings: Settings, dsn: str, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    study_id = await populate(dsn, args)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(SCORES)
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    print(f"written in {time.perf_counter() - started:.1f} s")

    engine = create_engine(settings)
    sessions = create_sessionmaker(engine)
    try:
        async with sessions() as session, session.begin():
            busiest = await session.scalar(
                select(AssessmentSession.participant_id)
                .where(AssessmentSession.study_id == study_id)
                .group_by(AssessmentSession.participant_id)
                .order_by(func.count().desc())
                .limit(1)
            )
        for dataset, filters in (
            (STUDY_REPORT, {}),
            (PARTICIPANT_REPORT, {"participant_ids": [str(busiest)]}),
        ):
            async with sessions() as session, session.begin():
                job = ExportJob(
                    id=uuid.uuid4(),
                    study_id=study_id,
                    format="pdf",
                    dataset=dataset,
                    filters=filters,
                    include_contact_details=False,
                    status=ExportStatus.QUEUED,
                    rows_done=0,
                )
                session.add(job)
            before = reset_peak()
            started = time.perf_counter()
            report = await run_pending_exports(sessions, settings)
            elapsed = time.perf_counter() - started
            async with sessions() as session:
                done = await session.get(ExportJob, job.id)
                assert done is not None and done.file_path is not None, report
                data = b"".join(report_storage(settings).iter_chunks(done.file_path))
            pages = len(PdfReader(io.BytesIO(data)).pages)
            print(
                f"{dataset}: {elapsed:.2f} s, {len(data) / 1024:.0f} KB, {pages} pages, "
                f"resident memory {before:.0f} MB, peak while making it {peak_mb():.0f} MB"
            )
    finally:
        await engine.dispose()


def main() -> None:
    args = parse_args()
    database = f"metricis_bench_reports_{os.getpid()}"
    asyncio.run(create_database(database))
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
    try:
        upgrade(url)
        with tempfile.TemporaryDirectory() as scratch:
            settings = Settings(DATABASE_URL=url, STORAGE_DIR=Path(scratch))
            print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
            asyncio.run(run(settings, f"{POSTGRES}/{database}", args))
    finally:
        asyncio.run(drop_database(database))


if __name__ == "__main__":
    main()
