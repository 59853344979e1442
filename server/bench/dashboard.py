"""The dashboard on a big study: latency of `GET /api/dashboard/studies/{id}` and
`GET /api/dashboard` over HTTP, and the plan of the slowest query.

    python -m bench.dashboard [--participants 5000] [--sessions 100000] [--requests 40]

Creates its own PostgreSQL database, serves it with one `metricis serve` worker, writes a study
of `--participants` participants (4 sites, 7 visits each) and `--sessions` sessions over the
past year (one task result each, a tenth of them flagged, a sync lag on each), with 20,000 audit
events, 10,000 notifications and 5,000 webhook deliveries, all with COPY; then times
`--requests` sequential requests of each route (after 5 warm-up requests) as an administrator
and as a site-scoped coordinator, prints the median, p95 and spread with the machine's load
(`uptime`), and runs the study dashboard once in-process to EXPLAIN ANALYZE its slowest
statement. Drops the database at the end. Needs PostgreSQL on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, create_async_engine

from app.models.user import UserRole
from app.services.dashboard.overview import study_dashboard
from app.services.principals import StaffPrincipal
from bench.server import running_server
from bench.submit import POSTGRES, create_database, drop_database

ADMIN_PASSWORD = "Quartz-Harbor-Lattice-91!"  # noqa: S105 - a throwaway local database
COORDINATOR_PASSWORD = "Velvet-Compass-Orbit-27!"  # noqa: S105 - a throwaway local database
TEMPORARY_PASSWORD = "Amber-Signal-Meadow-64!"  # noqa: S105 - a throwaway local database
FLAGS = ("ANTICIPATIONS_HIGH", "TIMEOUTS_HIGH", "FOCUS_LOST", "MISSING_FIELD", "COARSE_TIMER")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--participants", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep-database", action="store_true", help="to study the plans")
    return parser.parse_args()


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


async def copy(
    connection: asyncpg.Connection, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    await connection.copy_records_to_table(table, records=rows, columns=list(columns))


async def populate(dsn: str, args: argparse.Namespace) -> uuid.UUID:
    """Write the study; its id. Times are relative to now, so the figures look current."""
    rng = random.Random(args.seed)
    now = datetime.now(UTC)
    connection = await asyncpg.connect(dsn)
    try:
        admin_id = await connection.fetchval("SELECT id FROM users WHERE role = 'admin' LIMIT 1")
        study_id = uuid.uuid4()
        await copy(
            connection,
            "studies",
            (
                "id",
                "code",
                "name",
                "status",
                "config",
                "supported_languages",
                "consent_mode",
                "timezone",
            ),
            [
                (
                    study_id,
                    "DASH-BENCH",
                    "Dashboard benchmark",
                    "active",
                    "{}",
                    '["en"]',
                    "none",
                    "Europe/Paris",
                )
            ],
        )
        sites = [uuid.uuid4() for _ in range(4)]
        await copy(
            connection,
            "study_sites",
            ("id", "study_id", "code", "name", "timezone"),
            [
                (site, study_id, f"S{i}", f"Site {i}", "Europe/Paris")
                for i, site in enumerate(sites)
            ],
        )
        battery_id, version_id = uuid.uuid4(), uuid.uuid4()
        await copy(
            connection,
            "batteries",
            ("id", "study_id", "name", "current_version"),
            [(battery_id, study_id, "Main", 1)],
        )
        await copy(
            connection,
            "battery_versions",
            ("id", "battery_id", "version", "name", "tasks", "created_at"),
            [
                (
                    version_id,
                    battery_id,
                    1,
                    "Main",
                    '[{"module_id": "simple-rt", "config": {}}]',
                    now,
                )
            ],
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
                    "monthly",
                    "Monthly",
                    "enrollment_date",
                    0,
                    0,
                    6,
                    battery_id,
                    30,
                    7,
                    "[]",
                )
            ],
        )

        statuses = ["enrolled"] * 80 + ["withdrawn"] * 8 + ["completed"] * 7 + ["screened"] * 5
        participants = [
            (
                uuid.uuid4(),
                study_id,
                f"B{index:05d}",
                sites[index % 4],
                rng.choice(statuses),
                "patient",
                "en",
                "Europe/Paris",
            )
            for index in range(args.participants)
        ]
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
            participants,
        )

        # Seven monthly visits each, the first between 200 days ago and today: past ones
        # completed (85 %) or missed, the current one open, later ones scheduled.
        visits = []
        for person in participants:
            first = now - timedelta(days=rng.randint(0, 200))
            for occurrence in range(7):
                opens = first + timedelta(days=30 * occurrence)
                closes = opens + timedelta(days=7)
                if closes <= now:
                    status = "completed" if rng.random() < 0.85 else "missed"
                elif opens <= now:
                    status = "open"
                else:
                    status = "scheduled"
                visits.append(
                    (
                        uuid.uuid4(),
                        study_id,
                        person[0],
                        schedule_id,
                        1,
                        event_id,
                        "monthly",
                        occurrence + 1,
                        f"Month {occurrence}",
                        battery_id,
                        "enrollment_date",
                        first.date(),
                        "Europe/Paris",
                        opens.date(),
                        opens.date(),
                        closes.date(),
                        opens,
                        opens,
                        closes,
                        status,
                    )
                )
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

        sessions, tasks = [], []
        for _ in range(args.sessions):
            person = participants[rng.randrange(len(participants))]
            started = now - timedelta(seconds=rng.randint(0, 365 * 86400))
            session_id = uuid.uuid4()
            status = rng.choices(["completed", "abandoned", "expired"], (90, 7, 3))[0]
            sessions.append(
                (
                    session_id,
                    study_id,
                    person[0],
                    battery_id,
                    version_id,
                    1,
                    status,
                    started,
                    started + timedelta(hours=4),
                    started + timedelta(minutes=12),
                )
            )
            flags = (
                [{"code": rng.choice(FLAGS), "task": "simple-rt", "evidence": {}}]
                if rng.random() < 0.1
                else []
            )
            received = started + timedelta(minutes=12, seconds=rng.expovariate(1 / 600))
            tasks.append(
                (
                    uuid.uuid4(),
                    session_id,
                    "simple-rt",
                    "0" * 64,
                    f"sources/{session_id}.json",
                    "0" * 64,
                    1000,
                    60,
                    "{}",
                    json.dumps(flags),
                    "simple-rt",
                    "1",
                    "[]",
                    received,
                    started + timedelta(minutes=12),
                )
            )
        await copy(
            connection,
            "assessment_sessions",
            (
                "id",
                "study_id",
                "participant_id",
                "battery_id",
                "battery_version_id",
                "battery_version",
                "status",
                "started_at",
                "expires_at",
                "ended_at",
            ),
            sessions,
        )
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
            tasks,
        )

        events = [
            (
                uuid.uuid4(),
                now - timedelta(seconds=rng.randint(0, 365 * 86400)),
                "user",
                str(admin_id),
                rng.choice(["session.end", "participant.update", "visit.completed"]),
                rng.choice(["assessment", "data", "visit"]),
                "participant",
                None,
                study_id,
                participants[rng.randrange(len(participants))][0],
            )
            for _ in range(20_000)
        ]
        await copy(
            connection,
            "audit_events",
            (
                "id",
                "occurred_at",
                "actor_type",
                "actor_id",
                "action",
                "category",
                "entity_type",
                "entity_id",
                "study_id",
                "participant_id",
            ),
            events,
        )

        # Scheduled ones lie ahead, so that the server's dispatcher leaves them alone.
        notification_rows = []
        for _ in range(10_000):
            status = rng.choices(["sent", "scheduled", "failed", "cancelled"], (80, 10, 5, 5))[0]
            hours = rng.randint(1, 200) if status == "scheduled" else -rng.randint(1, 2000)
            notification_rows.append((status, now + timedelta(hours=hours)))
        notifications = [
            (
                uuid.uuid4(),
                study_id,
                participants[rng.randrange(len(participants))][0],
                "visit_reminder",
                "email",
                status,
                due,
                due,
                "en",
                "Reminder",
                uuid.uuid4().hex,
                0,
            )
            for status, due in notification_rows
        ]
        await copy(
            connection,
            "notifications",
            (
                "id",
                "study_id",
                "participant_id",
                "kind",
                "channel",
                "status",
                "send_at",
                "due_at",
                "language",
                "body",
                "dedupe_key",
                "attempts",
            ),
            notifications,
        )

        subscription_id = uuid.uuid4()
        await copy(
            connection,
            "webhook_subscriptions",
            (
                "id",
                "study_id",
                "url",
                "event_types",
                "active",
                "secret_encrypted",
                "secret_created_at",
            ),
            [
                (
                    subscription_id,
                    study_id,
                    "https://receiver.example.org/hook",
                    '["session.completed"]',
                    True,
                    "unused",
                    now,
                )
            ],
        )
        outbox_events = [
            (
                uuid.uuid4(),
                "session.completed",
                1,
                study_id,
                None,
                "{}",
                now - timedelta(minutes=index),
            )
            for index in range(5_000)
        ]
        await copy(
            connection,
            "outbox_events",
            ("id", "type", "version", "study_id", "participant_id", "payload", "occurred_at"),
            outbox_events,
        )
        await copy(
            connection,
            "outbox_deliveries",
            (
                "id",
                "event_id",
                "destination",
                "subscription_id",
                "status",
                "attempts",
                "round_attempts",
            ),
            [
                (
                    uuid.uuid4(),
                    row[0],
                    "webhook",
                    subscription_id,
                    rng.choices(["delivered", "pending", "failed", "dead"], (90, 5, 3, 2))[0],
                    1,
                    1,
                )
                for row in outbox_events
            ],
        )
        await connection.execute("ANALYZE")
        print(
            f"data: {len(participants)} participants, {len(visits)} visits, "
            f"{len(sessions)} sessions, {len(tasks)} task results, {len(events)} audit events, "
            f"{len(notifications)} notifications, {len(outbox_events)} webhook deliveries"
        )
        return study_id
    finally:
        await connection.close()


async def site_coordinator(
    client: httpx.AsyncClient, admin: dict[str, str], study_id: uuid.UUID
) -> dict[str, str]:
    """A coordinator member scoped to the first site, signed in (created through the API)."""
    email = f"coordinator-{uuid.uuid4().hex[:8]}@example.org"
    created = await client.post(
        "/api/auth/register",
        headers=admin,
        json={
            "email": email,
            "name": "Site coordinator",
            "role": "coordinator",
            "password": TEMPORARY_PASSWORD,
        },
    )
    created.raise_for_status()
    first = await client.post(
        "/api/auth/login", json={"email": email, "password": TEMPORARY_PASSWORD}
    )
    first.raise_for_status()
    changed = await client.post(
        "/api/auth/change-password",
        headers={"Authorization": f"Bearer {first.json()['access_token']}"},
        json={"current_password": TEMPORARY_PASSWORD, "new_password": COORDINATOR_PASSWORD},
    )
    changed.raise_for_status()
    sites = await client.get(f"/api/studies/{study_id}/sites", headers=admin)
    sites.raise_for_status()
    site_id = next(s["id"] for s in sites.json()["data"] if s["code"] == "S0")
    member = await client.post(
        f"/api/studies/{study_id}/members",
        headers=admin,
        json={"user_id": created.json()["user"]["id"], "role": "coordinator", "site_id": site_id},
    )
    member.raise_for_status()
    login = await client.post(
        "/api/auth/login", json={"email": email, "password": COORDINATOR_PASSWORD}
    )
    login.raise_for_status()
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def time_route(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], requests: int
) -> list[float]:
    for _ in range(5):
        (await client.get(path, headers=headers)).raise_for_status()
    durations = []
    for _ in range(requests):
        started = time.perf_counter()
        response = await client.get(path, headers=headers)
        durations.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return durations


def describe(name: str, durations: list[float]) -> str:
    ordered = sorted(durations)
    p95 = ordered[max(0, -(-95 * len(ordered) // 100) - 1)]
    return (
        f"{name}: median {statistics.median(ordered):.1f} ms, p95 {p95:.1f} ms, "
        f"min {ordered[0]:.1f}, max {ordered[-1]:.1f}, stdev {statistics.stdev(ordered):.1f} "
        f"({len(ordered)} requests)"
    )


async def measure(base_url: str, email: str, study_id: uuid.UUID, requests: int) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        login = await client.post(
            "/api/auth/login", json={"email": email, "password": ADMIN_PASSWORD}
        )
        login.raise_for_status()
        admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
        coordinator = await site_coordinator(client, admin, study_id)
        print(f"load before: {uptime()}")
        for name, path, headers in (
            ("GET /api/dashboard/studies/{id}, admin", f"/api/dashboard/studies/{study_id}", admin),
            ("GET /api/dashboard, admin", "/api/dashboard", admin),
            (
                "GET /api/dashboard/studies/{id}, site-scoped coordinator",
                f"/api/dashboard/studies/{study_id}",
                coordinator,
            ),
        ):
            print(describe(name, await time_route(client, path, headers, requests)))
        print(f"load after: {uptime()}")


async def explain_slowest(database_url: str, study_id: uuid.UUID) -> None:
    """Run the study dashboard in-process, time each statement, EXPLAIN ANALYZE the slowest."""
    engine = create_async_engine(database_url)
    timings: list[tuple[float, str, Any]] = []

    def before(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        conn.info["started"] = time.perf_counter()

    def after(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        timings.append(((time.perf_counter() - conn.info["started"]) * 1000, statement, params))

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    event.listen(engine.sync_engine, "after_cursor_execute", after)
    try:
        async with engine.connect() as connection:
            admin_id = (
                await connection.exec_driver_sql("SELECT id FROM users WHERE role = 'admin'")
            ).scalar_one()
            principal = StaffPrincipal(
                user_id=admin_id,
                session_id=uuid.uuid4(),
                email="bench@example.org",
                name="Bench",
                role=UserRole.ADMIN,
                must_change_password=False,
            )
            for _ in range(2):  # the second run is the one measured (warm caches)
                timings.clear()
                session = AsyncSession(bind=connection)
                await study_dashboard(session, principal, study_id)
                await session.close()
            total = sum(duration for duration, _, _ in timings)
            print(f"in-process study dashboard: {len(timings)} statements, {total:.1f} ms")
            for duration, statement, _ in sorted(timings, reverse=True)[:5]:
                print(f"  {duration:6.1f} ms  {' '.join(statement.split())[:110]}")
            duration, statement, params = max(timings, key=lambda item: item[0])
            await explain(connection, statement, params)
    finally:
        await engine.dispose()


async def explain(connection: AsyncConnection, statement: str, params: Any) -> None:
    plan = await connection.exec_driver_sql(
        "EXPLAIN (ANALYZE, BUFFERS) " + statement, tuple(params) if params else ()
    )
    print("EXPLAIN ANALYZE of the slowest statement:")
    print(" ".join(statement.split()))
    for (line,) in plan:
        print(f"  {line}")


def main() -> None:
    args = parse_args()
    database = f"metricis_bench_dashboard_{os.getpid()}"
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
            with running_server(env, workers=1, admin=(email, ADMIN_PASSWORD)) as base_url:
                started = time.perf_counter()
                study_id = asyncio.run(populate(f"{POSTGRES}/{database}", args))
                print(f"written and analysed in {time.perf_counter() - started:.1f} s")
                asyncio.run(measure(base_url, email, study_id, args.requests))
        asyncio.run(explain_slowest(url, study_id))
    finally:
        if args.keep_database:
            print(f"kept database {database}")
        else:
            asyncio.run(drop_database(database))


if __name__ == "__main__":
    main()
