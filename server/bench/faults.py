"""Fault scenarios for submissions, run by hand against a real server on this machine.

    python -m bench.faults storm|db-restart|redis-stop|kill-worker|sync-torn|sync-concurrent
        [--submissions N] [--port PORT]

Each scenario starts the real server (2 workers, PostgreSQL, Redis session store), prepares a
study, a battery of ten tasks and sessions through the API, then drives submissions from 16
clients that retry like the mobile client does: on a connection error, a timeout or a 5xx
they send the same body again (backoff 0.2 s doubling to 3 s) until they get an answer they
can act on (2xx or 409). It then checks the database against what the clients were told.

- storm: at least 10,000 submissions, 20 % exact replays, 1 % same session and task with other
  content; every replay must get the original receipt, every conflict 409, no duplicates.
- db-restart: restarts the PostgreSQL cluster in the middle of the load.
- redis-stop: shuts Redis down in the middle of the load and starts it again afterwards.
- kill-worker: SIGKILLs one API worker in the middle of the load (the supervisor restarts it).
- sync-torn: sends one offline sync batch (five sessions) three times, each time closing the
  connection before the answer, then once normally: the final state must be that of one batch
  and the last answer all `duplicate`.
- sync-concurrent: sends each of a few new offline batches (two sessions of three tasks, 100
  to 500 trials each) five times at once, as a device retrying while its first upload still
  runs: every item must be `accepted` once and `duplicate` otherwise, stored once, promptly.

It restarts the machine's PostgreSQL or Redis: do not run it while a test suite is running.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from bench.load import require_loopback
from bench.server import running_server
from bench.submit import ADMIN_PASSWORD, TASKS, create_database, drop_database, prepare_sessions

POSTGRES = "postgresql://postgres@127.0.0.1:5432"
TRIALS_PER_TASK = 20
CLIENTS = 16


@dataclass
class Submission:
    session_id: str
    task: str
    body: bytes
    kind: str  # "original" | "replay" | "conflict"
    original: Submission | None = None
    status: int | None = None
    receipt: str | None = None
    attempts: int = 0
    position: float = 0.0
    answered: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Outcome:
    submissions: list[Submission]
    transport_errors: int = 0
    retried_statuses: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0


def task_body(session_id: str, task: str, seed: int, trials: int = TRIALS_PER_TASK) -> bytes:
    rows = [
        {"task": task, "trial_index": i, "rt": 200.0 + (i * 31 + seed) % 500, "correct": i % 5 != 0}
        for i in range(trials)
    ]
    return json.dumps({"session_id": session_id, "trials": rows}, separators=(",", ":")).encode()


def plan(session_ids: list[str], total: int) -> list[Submission]:
    """Originals in order; replays of earlier originals and conflicts sprinkled after them."""
    rng = random.Random(7)
    pairs = [(session_id, task) for task in TASKS for session_id in session_ids]
    n_replays = total // 5
    n_conflicts = total // 100
    n_originals = total - n_replays - n_conflicts
    originals = [
        Submission(sid, task, task_body(sid, task, index), "original", position=index)
        for index, (sid, task) in enumerate(pairs[:n_originals])
    ]
    extra: list[Submission] = []
    for _ in range(n_replays):
        source = rng.choice(originals)
        later = rng.uniform(source.position + 0.5, n_originals)
        extra.append(
            Submission(
                source.session_id, source.task, source.body, "replay", source, position=later
            )
        )
    for source in rng.sample(originals, n_conflicts):
        changed = task_body(source.session_id, source.task, int(source.position) + 7)
        later = rng.uniform(source.position + 0.5, n_originals)
        extra.append(
            Submission(source.session_id, source.task, changed, "conflict", source, position=later)
        )
    return sorted(originals + extra, key=lambda submission: submission.position)


async def drive(
    base_url: str,
    headers: dict[str, str],
    work: list[Submission],
    fault: asyncio.Event | None = None,
) -> Outcome:
    require_loopback(base_url)
    outcome = Outcome(work)
    queue: asyncio.Queue[Submission] = asyncio.Queue()
    for item in work:
        queue.put_nowait(item)
    started = time.perf_counter()
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=15
    ) as client:

        async def worker() -> None:
            while not queue.empty():
                item = queue.get_nowait()
                # A replay or conflict waits until its original was answered, as a device's
                # retry of an answered request would.
                if item.original is not None:
                    await item.original.answered.wait()
                delay = 0.2
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    item.attempts += 1
                    try:
                        response = await client.post(
                            "/api/submit",
                            content=item.body,
                            headers={
                                "content-type": "application/json",
                                "X-Session-ID": item.session_id,
                            },
                        )
                    except httpx.HTTPError:
                        outcome.transport_errors += 1
                    else:
                        if response.status_code < 500:
                            item.status = response.status_code
                            item.receipt = response.text
                            item.answered.set()
                            break
                        outcome.retried_statuses[response.status_code] = (
                            outcome.retried_statuses.get(response.status_code, 0) + 1
                        )
                    await asyncio.sleep(delay)
                    delay = min(3.0, delay * 2)

        await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    outcome.seconds = time.perf_counter() - started
    return outcome


async def check(database: str, storage_dir: Path, outcome: Outcome) -> dict[str, int]:
    connection = await asyncpg.connect(f"{POSTGRES}/{database}")
    try:
        stored = {
            (str(row["session_id"]), row["task"]): row
            for row in await connection.fetch(
                "SELECT session_id, task, content_hash, n_trials, source_path, source_sha256"
                " FROM task_results"
            )
        }
        trials = {
            (str(row["session_id"]), row["task"]): row["n"]
            for row in await connection.fetch(
                "SELECT session_id, task, count(*) AS n FROM trials GROUP BY session_id, task"
            )
        }
    finally:
        await connection.close()
    originals = [s for s in outcome.submissions if s.kind == "original"]
    figures = {
        "submissions": len(outcome.submissions),
        "originals": len(originals),
        "replays": sum(s.kind == "replay" for s in outcome.submissions),
        "conflicts_sent": sum(s.kind == "conflict" for s in outcome.submissions),
        "unanswered": sum(s.status is None for s in outcome.submissions),
        "transport_errors_retried": outcome.transport_errors,
        "5xx_retried": sum(outcome.retried_statuses.values()),
        "lost": 0,
        "duplicates": 0,
        "wrong_trial_counts": 0,
        "replays_not_identical": 0,
        "conflicts_not_409": 0,
        "originals_changed": 0,
        "source_documents_bad": 0,
    }
    for submission in originals:
        key = (submission.session_id, submission.task)
        if submission.status not in (200, 201) or key not in stored:
            figures["lost"] += 1
            continue
        if trials.get(key) != TRIALS_PER_TASK:
            figures["wrong_trial_counts"] += 1
        data = (storage_dir / stored[key]["source_path"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != stored[key]["source_sha256"]:
            figures["source_documents_bad"] += 1
        stored_trials = json.loads(data)["trials"]
        sent_trials = json.loads(submission.body)["trials"]
        # The document holds the validated trials (defaults filled in); every sent field must
        # be there with the value the original carried, not a conflicting resubmission's.
        if len(stored_trials) != len(sent_trials) or any(
            stored.get(name) != value
            for stored, sent in zip(stored_trials, sent_trials, strict=True)
            for name, value in sent.items()
        ):
            figures["originals_changed"] += 1
    for submission in outcome.submissions:
        original = submission.original
        if submission.kind == "replay" and (
            submission.status != 200 or original is None or submission.receipt != original.receipt
        ):
            figures["replays_not_identical"] += 1
        if submission.kind == "conflict" and submission.status != 409:
            figures["conflicts_not_409"] += 1
    figures["duplicates"] = max(0, len(stored) - len(originals)) + sum(
        1 for n in trials.values() if n > TRIALS_PER_TASK
    )
    return figures


def restart_postgres() -> None:
    cluster = sorted(path.name for path in Path("/etc/postgresql").iterdir())[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "restart"], check=True
    )


def stop_redis() -> None:
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "shutdown", "nosave"], check=False)


def start_redis() -> None:
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/var/lib/redis",
            "--logfile",
            "/var/log/redis/ci.log",
        ],
        check=True,
    )
    for _ in range(50):
        if subprocess.run(["redis-cli", "ping"], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)


def serve_pid() -> int:
    found = subprocess.run(
        ["pgrep", "-f", "metricis serve --workers"], capture_output=True, text=True, check=True
    )
    return int(found.stdout.split()[0])


def kill_one_worker(server_pid: int) -> int:
    """SIGKILL the busiest worker: the one holding the connections, so requests are cut."""
    listing = subprocess.run(
        ["ps", "--ppid", str(server_pid), "-o", "pid=,pcpu="],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    workers = [line.split() for line in listing if line.strip()]
    victim = int(max(workers, key=lambda fields: float(fields[1]))[0])
    os.kill(victim, signal.SIGKILL)
    return victim


async def run_with_fault(
    scenario: str, base_url: str, headers: dict[str, str], work: list[Submission]
) -> Outcome:
    task = asyncio.create_task(drive(base_url, headers, work))
    await asyncio.sleep(3)
    if scenario == "db-restart":
        await asyncio.to_thread(restart_postgres)
        print("PostgreSQL restarted")
    elif scenario == "redis-stop":
        await asyncio.to_thread(stop_redis)
        print("Redis stopped")
        await asyncio.sleep(5)
        await asyncio.to_thread(start_redis)
        print("Redis started again")
    elif scenario == "kill-worker":
        server_pid = await asyncio.to_thread(serve_pid)
        print(f"killed worker {kill_one_worker(server_pid)}")
    return await task


async def send_and_tear(base_url: str, headers: dict[str, str], body: bytes, wait: float) -> None:
    """Send a POST /api/sync and close the connection without reading the answer."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"POST /api/sync HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: {headers['Authorization']}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
    await asyncio.sleep(wait)
    writer.close()
    del reader


@dataclass(frozen=True)
class SyncStudy:
    """An active study without consent requirement and a battery of the first three tasks."""

    headers: dict[str, str]  # the administrator's
    study_id: str
    battery_id: str

    async def participant(self, client: httpx.AsyncClient, code: str) -> str:
        created = await client.post(
            "/api/participants",
            headers=self.headers,
            json={"study_id": self.study_id, "participant_id": code},
        )
        created.raise_for_status()
        participant_id: str = created.json()["id"]
        return participant_id

    def session_item(
        self, item_id: str, participant_id: str, trials_per_task: list[int], seed: int
    ) -> dict[str, object]:
        session_id = str(uuid.uuid4())
        trials = [
            trial
            for task, count in zip(TASKS[:3], trials_per_task, strict=True)
            for trial in json.loads(task_body(session_id, task, seed, count))["trials"]
        ]
        return {
            "type": "session",
            "id": item_id,
            "session_id": session_id,
            "participant_id": participant_id,
            "battery_id": self.battery_id,
            "battery_version": 1,
            "started_at": "2026-11-20T09:00:00+00:00",
            "ended_at": "2026-11-20T09:20:00+00:00",
            "status": "completed",
            "trials": trials,
        }


async def prepare_sync_study(client: httpx.AsyncClient, email: str, code: str) -> SyncStudy:
    login = await client.post("/api/auth/login", json={"email": email, "password": ADMIN_PASSWORD})
    login.raise_for_status()
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    study = await client.post(
        "/api/studies",
        headers=headers,
        json={"code": code, "name": "Sync", "consent_mode": "none"},
    )
    study.raise_for_status()
    study_id = study.json()["id"]
    activated = await client.post(
        f"/api/studies/{study_id}/status", headers=headers, json={"status": "active"}
    )
    activated.raise_for_status()
    battery = await client.post(
        "/api/batteries",
        headers=headers,
        json={
            "study_id": study_id,
            "name": "B",
            "tasks": [{"module_id": t, "config": {}} for t in TASKS[:3]],
        },
    )
    battery.raise_for_status()
    return SyncStudy(headers, study_id, battery.json()["id"])


async def stored_counts(database: str) -> dict[str, int]:
    connection = await asyncpg.connect(f"{POSTGRES}/{database}")
    try:
        return {
            table: await connection.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608
            for table in ("assessment_sessions", "task_results", "trials")
        }
    finally:
        await connection.close()


async def sync_torn(base_url: str, email: str, database: str) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        study = await prepare_sync_study(client, email, "SYNC-TORN")
        headers = study.headers
        items = [
            study.session_item(
                f"item-{index}",
                await study.participant(client, f"S{index}"),
                [TRIALS_PER_TASK] * 3,
                index,
            )
            for index in range(5)
        ]
        body = json.dumps({"items": items}).encode()
        for attempt, wait in enumerate((0.0, 0.05, 0.3)):
            await send_and_tear(base_url, headers, body, wait)
            print(f"torn attempt {attempt + 1} sent")
        await asyncio.sleep(2)
        final = await client.post(
            "/api/sync", headers={**headers, "content-type": "application/json"}, content=body
        )
        if final.status_code != 200:
            raise SystemExit(f"final sync answered {final.status_code}: {final.text}")
    counts = await stored_counts(database)
    statuses = [item["status"] for item in final.json()["items"]]
    return {
        "final_status_code": final.status_code,
        "final_item_statuses": statuses,
        "sessions": counts["assessment_sessions"],
        "task_results": counts["task_results"],
        "trials": counts["trials"],
        "expected": {"sessions": 5, "task_results": 15, "trials": 15 * TRIALS_PER_TASK},
    }


CONCURRENT_COPIES = 5
CONCURRENT_ROUNDS = 5
CONCURRENT_TRIALS_PER_TASK = [100, 300, 500]


async def sync_concurrent(base_url: str, email: str, database: str) -> dict[str, object]:
    """Each round: a new two-session batch sent five times at once; its wall time and answers."""
    seconds: list[float] = []
    answers: dict[str, int] = {}
    wrong_rounds = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        study = await prepare_sync_study(client, email, "SYNC-CONCURRENT")
        for round_index in range(CONCURRENT_ROUNDS):
            participant_id = await study.participant(client, f"C{round_index}")
            items = [
                study.session_item(
                    f"item-{index}", participant_id, CONCURRENT_TRIALS_PER_TASK, round_index
                )
                for index in range(2)
            ]
            body = json.dumps({"items": items}).encode()
            headers = {**study.headers, "content-type": "application/json"}
            started = time.perf_counter()
            responses = await asyncio.gather(
                *(
                    client.post("/api/sync", headers=headers, content=body)
                    for _ in range(CONCURRENT_COPIES)
                )
            )
            seconds.append(time.perf_counter() - started)
            for response in responses:
                if response.status_code != 200:
                    raise SystemExit(f"sync answered {response.status_code}: {response.text}")
                for item in response.json()["items"]:
                    key = item["error"]["code"] if item["error"] else item["status"]
                    answers[key] = answers.get(key, 0) + 1
            for index in range(2):
                per_item = sorted(r.json()["items"][index]["status"] for r in responses)
                if per_item != ["accepted"] + ["duplicate"] * (CONCURRENT_COPIES - 1):
                    wrong_rounds += 1
    trials = sum(CONCURRENT_TRIALS_PER_TASK)
    return {
        "seconds_per_round": [round(s, 2) for s in seconds],
        "answers": answers,
        "items_not_one_accepted_rest_duplicate": wrong_rounds,
        **await stored_counts(database),
        "expected": {
            "assessment_sessions": 2 * CONCURRENT_ROUNDS,
            "task_results": 6 * CONCURRENT_ROUNDS,
            "trials": 2 * trials * CONCURRENT_ROUNDS,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "scenario",
        choices=[
            "storm",
            "db-restart",
            "redis-stop",
            "kill-worker",
            "sync-torn",
            "sync-concurrent",
        ],
    )
    parser.add_argument("--submissions", type=int, default=None)
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    args = parser.parse_args()
    total = args.submissions or (10_000 if args.scenario == "storm" else 3_000)
    database = f"metricis_faults_{os.getpid()}"
    asyncio.run(create_database(database))
    try:
        with tempfile.TemporaryDirectory() as scratch:
            storage = Path(scratch) / "storage"
            env = {
                "DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}",
                "STORAGE_DIR": str(storage),
                "RATE_LIMIT_ENABLED": "false",
                "SESSION_STORAGE_BACKEND": "redis",
                "REDIS_URL": "redis://127.0.0.1:6379/6",
                "DATABASE_CONNECT_TIMEOUT_SECONDS": "2",
            }
            email = f"faults-{uuid.uuid4().hex[:8]}@example.org"
            with running_server(
                env, workers=2, admin=(email, ADMIN_PASSWORD), port=args.port
            ) as base_url:
                sync_scenarios = {"sync-torn": sync_torn, "sync-concurrent": sync_concurrent}
                if args.scenario in sync_scenarios:
                    scenario = sync_scenarios[args.scenario]
                    for name, value in asyncio.run(scenario(base_url, email, database)).items():
                        print(f"  {name}: {value}")
                    return
                sessions_needed = -(-total // len(TASKS)) + 1
                headers, session_ids = asyncio.run(
                    prepare_sessions(base_url, email, sessions_needed)
                )
                work = plan(session_ids, total)
                if args.scenario == "storm":
                    outcome = asyncio.run(drive(base_url, headers, work))
                else:
                    outcome = asyncio.run(run_with_fault(args.scenario, base_url, headers, work))
                figures = asyncio.run(check(database, storage, outcome))
            print(f"{args.scenario}: {outcome.seconds:.1f} s")
            for name, value in figures.items():
                print(f"  {name}: {value}")
    finally:
        asyncio.run(drop_database(database))


if __name__ == "__main__":
    main()
