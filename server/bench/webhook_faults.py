"""Webhook fault run: completed sessions delivered through the outbox to a flaky receiver, with a
worker SIGKILLed in the middle of deliveries. By hand, never in CI.

    python -m bench.webhook_faults [--sessions 1000] [--clients 8] [--port PORT]

Starts the real server (2 API processes, PostgreSQL, Redis as session store and broker), one
Celery worker for the `webhooks` queue (2 processes) and beat, and a webhook receiver on
127.0.0.1 that verifies every signature with the snippet of docs/webhooks.md and answers 500 to
one request in three and times out on one in ten (it answers after WEBHOOK_TIMEOUT_SECONDS + 1,
once the server has given up). Through the API it enrolls participants and runs each one's
session to completion (two tasks), so every session leaves four events: participant.enrolled,
two task.accepted, session.completed. A third of the way through, while deliveries are in
flight, it SIGKILLs the worker's whole process group and starts a new worker a second later.

Once the load is over it waits until every delivery is delivered, then checks and prints:
every event of the study reached the receiver and was answered 2xx at least once; how many
times each event was accepted; every attempt in the log (one row per attempt, as many as the
deliveries count) against what the receiver saw, answer by answer, the interrupted attempts
being the only ones allowed to differ. Exits 1 if a check fails. Needs PostgreSQL and Redis on
this machine; creates and drops its own database and empties Redis database 5.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis

from bench.load import require_loopback
from bench.server import METRICIS, SERVER_ROOT, running_server
from bench.submit import ADMIN_PASSWORD, POSTGRES, create_database, drop_database, trials_for

REDIS_URL = "redis://127.0.0.1:6379/5"
TASKS = ["simple-rt", "choice-rt"]
TRIALS_PER_TASK = 20
TIMEOUT_SECONDS = 1.0
DOCS = SERVER_ROOT.parent / "docs" / "webhooks.md"
SNIPPET_MARKER = "<!-- verification-snippet"
DRAIN_LIMIT_SECONDS = 900.0

SERVER_SETTINGS = {
    "RATE_LIMIT_ENABLED": "false",
    "SESSION_STORAGE_BACKEND": "redis",
    "REDIS_URL": REDIS_URL,
    "CELERY_BROKER_URL": REDIS_URL,
    "DATABASE_CONNECT_TIMEOUT_SECONDS": "2",
    "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "WEBHOOK_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
    "OUTBOX_LEASE_SECONDS": "3",
    "OUTBOX_SCAN_SECONDS": "1",
    "OUTBOX_RETRY_BASE_SECONDS": "0.5",
    "OUTBOX_RETRY_MAX_SECONDS": "4",
    # With two failures in five, thirty failures in a row do not happen: nothing should die.
    "OUTBOX_MAX_ATTEMPTS": "30",
}


def documented_verifier() -> Callable[[str, str, bytes], bool]:
    """`verify_signature` as docs/webhooks.md gives it to receivers."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("```python", text.index(SNIPPET_MARKER)) + len("```python")
    namespace: dict[str, Any] = {}
    exec(compile(text[start : text.index("```", start)], str(DOCS), "exec"), namespace)  # noqa: S102
    verify: Callable[[str, str, bytes], bool] = namespace["verify_signature"]
    return verify


class ReceiverServer(ThreadingHTTPServer):
    # Sixteen delivery lanes connect at once: the default backlog of 5 would refuse some.
    request_queue_size = 128


@dataclass
class FlakyReceiver:
    """Answers each POST 500 (one in three), late (one in ten) or 200, at random with a seed."""

    secret: str = ""
    rng: random.Random = field(default_factory=lambda: random.Random(2026))
    answers: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)  # event id -> 200 answers
    received: Counter[str] = field(default_factory=Counter)  # event id -> requests
    # (delivery id, attempt number) -> the answers given to that attempt's request(s)
    attempts: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    unverified: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._verify = documented_verifier()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.answer(self, body)

        self.server = ReceiverServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/metricis"

    def answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        event_id = handler.headers.get("X-Metricis-Event-Id", "")
        signature = handler.headers.get("X-Metricis-Signature", "")
        attempt = (
            handler.headers.get("X-Metricis-Delivery-Id", ""),
            int(handler.headers.get("X-Metricis-Delivery-Attempt") or 0),
        )
        verified = self._verify(self.secret, signature, body)
        with self._lock:
            draw = self.rng.random()
            kind = "late" if draw < 0.1 else "500" if draw < 0.1 + 1 / 3 else "200"
            self.answers[kind] += 1
            self.received[event_id] += 1
            self.attempts.setdefault(attempt, []).append(kind)
            self.unverified += 0 if verified else 1
            if kind == "200":
                self.accepted[event_id] += 1
        if kind == "late":
            time.sleep(TIMEOUT_SECONDS + 1)
        try:
            handler.send_response(500 if kind == "500" else 200)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        except OSError:
            pass  # the server gave up waiting: that attempt timed out

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Worker:
    """`metricis worker` for `queues`, in a process group of its own."""

    queues = "webhooks"

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [METRICIS, "worker", "--queues", self.queues, "--concurrency", "2"],
            cwd=SERVER_ROOT,
            env=self.env,
            start_new_session=True,
        )

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@dataclass
class Run:
    kill_at: int
    study_id: str = ""
    sessions_completed: int = 0
    kill_time: asyncio.Event = field(default_factory=asyncio.Event)
    kill_at_session: int = 0
    in_flight_at_kill: int = 0
    load_seconds: float = 0.0
    drain_seconds: float = 0.0

    def session_done(self) -> None:
        """Count a completed session and set the events its number reaches."""
        self.sessions_completed += 1
        if self.sessions_completed >= self.kill_at:
            self.kill_time.set()


async def _json(response: httpx.Response, status: int) -> dict[str, Any]:
    if response.status_code != status:
        raise SystemExit(f"{response.request.url} answered {response.status_code}: {response.text}")
    body: dict[str, Any] = response.json()
    return body


async def open_study(client: httpx.AsyncClient, email: str, code: str, name: str) -> str:
    """Sign the client in as the administrator and create an active study; answer its id."""
    login = await _json(
        await client.post("/api/auth/login", json={"email": email, "password": ADMIN_PASSWORD}),
        200,
    )
    client.headers["Authorization"] = f"Bearer {login['access_token']}"
    study = await _json(
        await client.post(
            "/api/studies",
            json={
                "code": f"{code}-{uuid.uuid4().hex[:6].upper()}",
                "name": name,
                "consent_mode": "none",
            },
        ),
        201,
    )
    study_id: str = study["id"]
    await _json(
        await client.post(f"/api/studies/{study_id}/status", json={"status": "active"}), 200
    )
    return study_id


async def add_battery(client: httpx.AsyncClient, study_id: str) -> str:
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
    return str(battery["id"])


async def subscribe(client: httpx.AsyncClient, study_id: str, receiver: FlakyReceiver) -> None:
    """Subscribe the receiver to every event a session leaves; give it the secret."""
    webhook = await _json(
        await client.post(
            f"/api/studies/{study_id}/webhooks",
            json={
                "url": receiver.url,
                "events": ["participant.enrolled", "task.accepted", "session.completed"],
            },
        ),
        201,
    )
    receiver.secret = webhook["secret"]


async def one_session(
    client: httpx.AsyncClient, study_id: str, battery_id: str, index: int
) -> None:
    participant = await _json(
        await client.post(
            "/api/participants", json={"study_id": study_id, "participant_id": f"W{index:05d}"}
        ),
        201,
    )
    started = await _json(
        await client.post(
            "/api/session/start",
            json={"participant_id": participant["id"], "battery_id": battery_id},
        ),
        201,
    )
    session_id = started["session_id"]
    for task in TASKS:
        await _json(
            await client.post(
                "/api/submit",
                headers={"X-Session-ID": session_id},
                json={"session_id": session_id, "trials": trials_for(task, TRIALS_PER_TASK, index)},
            ),
            201,
        )
    await _json(
        await client.post(
            "/api/session/end", json={"session_id": session_id, "status": "completed"}
        ),
        200,
    )


async def in_flight(database: str) -> int:
    connection = await asyncpg.connect(f"{POSTGRES}/{database}")
    try:
        count = await connection.fetchval(
            "SELECT count(*) FROM outbox_deliveries WHERE status = 'delivering'"
        )
        return int(count)
    finally:
        await connection.close()


async def kill_mid_delivery(
    database: str, worker: Worker, run: Run, patience_seconds: float = 60.0
) -> None:
    """Once `run.kill_at` sessions are complete, SIGKILL the worker while deliveries are claimed."""
    await run.kill_time.wait()
    deadline = time.monotonic() + patience_seconds
    while time.monotonic() < deadline:
        flying = await in_flight(database)
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
    raise SystemExit(
        f"no delivery was in flight for {patience_seconds:.0f} s: nothing to kill in the middle of"
    )


async def run_sessions(
    client: httpx.AsyncClient,
    run: Run,
    battery_id: str,
    sessions: int,
    clients: int,
    side: list[Coroutine[Any, Any, None]],
) -> None:
    """Run `sessions` sessions to completion over `clients` concurrent loops, with the `side`
    coroutines (faults waiting on the run's events) alongside; fill in the load time."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(sessions):
        queue.put_nowait(index)

    async def client_loop() -> None:
        while not queue.empty():
            index = queue.get_nowait()
            await one_session(client, run.study_id, battery_id, index)
            run.session_done()

    started = time.perf_counter()
    side_tasks = [asyncio.create_task(coroutine) for coroutine in side]
    await asyncio.gather(*(client_loop() for _ in range(clients)))
    run.load_seconds = time.perf_counter() - started
    await asyncio.gather(*side_tasks)


async def drive(
    base_url: str, email: str, database: str, receiver: FlakyReceiver, worker: Worker, args: Any
) -> Run:
    require_loopback(base_url)
    run = Run(kill_at=max(1, args.sessions // 3))
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        run.study_id = await open_study(client, email, "HOOKS", "Webhook faults")
        await subscribe(client, run.study_id, receiver)
        battery_id = await add_battery(client, run.study_id)
        side = [kill_mid_delivery(database, worker, run)]
        await run_sessions(client, run, battery_id, args.sessions, args.clients, side)
    return run


async def drain(database: str, run: Run) -> None:
    started = time.perf_counter()
    connection = await asyncpg.connect(f"{POSTGRES}/{database}")
    try:
        while time.perf_counter() - started < DRAIN_LIMIT_SECONDS:
            waiting = await connection.fetchval(
                "SELECT count(*) FROM outbox_deliveries WHERE status <> 'delivered'"
            )
            if waiting == 0:
                run.drain_seconds = time.perf_counter() - started
                return
            await asyncio.sleep(0.5)
    finally:
        await connection.close()
    raise SystemExit(f"deliveries still waiting after {DRAIN_LIMIT_SECONDS:.0f} s")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


# What the receiver may have seen of an attempt, by the outcome the log gives it. A timeout is
# an answer that did not come back in time: a late one by design, but on a loaded machine also a
# request that never reached the receiver or whose answer came too late; an interrupted attempt
# may have reached it with any answer, or not at all.
CONSISTENT: dict[tuple[str, int | None], set[tuple[str, ...]]] = {
    ("delivered", 200): {("200",)},
    ("http_error", 500): {("500",)},
    ("timeout", None): {("late",), ("200",), ("500",), ()},
    ("interrupted", None): {("late",), ("200",), ("500",), ()},
    ("connection_error", None): {("late",), ("200",), ("500",), ()},
}


def run_figures(run: Run) -> dict[str, Any]:
    return {
        "sessions completed": run.sessions_completed,
        "load seconds": round(run.load_seconds, 1),
        "worker SIGKILLed after session": run.kill_at_session,
        "deliveries in flight at the kill (all destinations)": run.in_flight_at_kill,
        "seconds from the end of the load to every delivery delivered": round(run.drain_seconds, 1),
    }


def print_figures(figures: dict[str, Any], indent: str = "  ") -> None:
    for name, value in figures.items():
        print(f"{indent}{name}: {json.dumps(value)}")


async def check_webhooks(
    database: str, study_id: str, receiver: FlakyReceiver, sessions: int
) -> tuple[dict[str, Any], list[str], Counter[str]]:
    """The webhook destination's figures, its failed checks and its attempts by outcome."""
    connection = await asyncpg.connect(f"{POSTGRES}/{database}")
    try:
        events = {
            str(row["id"]): row["type"]
            for row in await connection.fetch(
                "SELECT id, type FROM outbox_events WHERE study_id = $1", uuid.UUID(study_id)
            )
        }
        deliveries = await connection.fetch(
            "SELECT status, attempts, extract(epoch FROM delivered_at - created_at) AS latency"
            " FROM outbox_deliveries WHERE destination = 'webhook'"
        )
        logged = await connection.fetch(
            "SELECT a.delivery_id, a.number, a.outcome, a.status_code"
            " FROM outbox_delivery_attempts a JOIN outbox_deliveries d ON d.id = a.delivery_id"
            " WHERE d.destination = 'webhook'"
        )
    finally:
        await connection.close()

    # Each attempt of the log against what the receiver saw of that very attempt.
    matches = Counter[str]()
    inconsistent = 0
    logged_keys = set()
    for row in logged:
        key = (str(row["delivery_id"]), int(row["number"]))
        logged_keys.add(key)
        seen = tuple(receiver.attempts.get(key, ()))
        outcome = (row["outcome"], row["status_code"])
        matches[f"{row['outcome']}, receiver {'/'.join(seen) or 'never got it'}"] += 1
        if seen not in CONSISTENT.get(outcome, set()):
            inconsistent += 1
    unlogged = [key for key in receiver.attempts if key not in logged_keys]
    sent_twice = [key for key, answers in receiver.attempts.items() if len(answers) > 1]

    counted_attempts = sum(int(row["attempts"]) for row in deliveries)
    latencies = [float(row["latency"]) for row in deliveries if row["latency"] is not None]
    per_event = Counter(receiver.accepted[event_id] for event_id in events)
    # The receiver dedupes by event id: what it keeps is one copy of each event it accepted.
    deduped = len(set(receiver.accepted) & set(events))
    outcomes = Counter(str(row["outcome"]) for row in logged)

    figures = {
        "events by type": dict(Counter(events.values())),
        "webhook deliveries by status": dict(Counter(str(row["status"]) for row in deliveries)),
        "webhook attempt rows (log)": len(logged),
        "attempts counted on the webhook deliveries": counted_attempts,
        "webhook attempts by outcome": dict(outcomes),
        "receiver requests": sum(receiver.answers.values()),
        "receiver answers": dict(receiver.answers),
        "receiver signatures not verified": receiver.unverified,
        "distinct event ids the receiver accepted / events written": [deduped, len(events)],
        "each logged attempt, against what the receiver saw of it": dict(sorted(matches.items())),
        "events by number of 2xx answers received": dict(sorted(per_event.items())),
        "webhook delivery latency p50 / p99 / max s": [
            round(_percentile(latencies, 0.5), 2),
            round(_percentile(latencies, 0.99), 2),
            round(max(latencies), 2),
        ],
        "mean attempts per webhook delivery": round(
            statistics.fmean(r["attempts"] for r in deliveries), 2
        ),
    }

    failures = []
    expected_events = sessions * (2 + len(TASKS))
    if len(events) != expected_events or len(deliveries) != expected_events:
        failures.append(
            f"{len(events)} events and {len(deliveries)} webhook deliveries,"
            f" expected {expected_events}"
        )
    if per_event.get(0) or deduped != len(events):
        failures.append(
            f"{per_event.get(0, 0)} events never answered 2xx by the receiver;"
            f" it holds {deduped} distinct events of {len(events)}"
        )
    if set(receiver.received) - set(events):
        failures.append("the receiver got events the outbox does not hold")
    if receiver.unverified:
        failures.append(f"{receiver.unverified} requests failed signature verification")
    if any(str(row["status"]) != "delivered" for row in deliveries):
        failures.append("webhook deliveries not delivered")
    if len(logged) != counted_attempts:
        failures.append(
            f"{len(logged)} webhook attempt rows, {counted_attempts} counted on deliveries"
        )
    if outcomes["in_progress"]:
        failures.append("webhook attempts still in progress")
    if unlogged:
        failures.append(f"{len(unlogged)} requests reached the receiver without an attempt row")
    if sent_twice:
        failures.append(f"{len(sent_twice)} attempts reached the receiver more than once")
    if inconsistent:
        failures.append(f"{inconsistent} logged outcomes contradict what the receiver answered")
    return figures, failures, outcomes


async def check(database: str, run: Run, receiver: FlakyReceiver, sessions: int) -> list[str]:
    """Print the figures; answer the failed checks."""
    figures, failures, outcomes = await check_webhooks(database, run.study_id, receiver, sessions)
    print_figures({**run_figures(run), **figures})
    if not outcomes["interrupted"]:
        failures.append("no attempt was interrupted: the kill did not land mid-delivery")
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    args = parser.parse_args()
    database = f"metricis_webhook_faults_{os.getpid()}"
    asyncio.run(create_database(database))
    redis.Redis.from_url(REDIS_URL).flushdb()
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
            email = f"hooks-{uuid.uuid4().hex[:8]}@example.org"
            with running_server(
                env, workers=2, admin=(email, ADMIN_PASSWORD), port=args.port
            ) as base_url:
                process_env = {**os.environ, **env, "LOG_LEVEL": "warning"}
                worker = Worker(process_env)
                beat = subprocess.Popen([METRICIS, "beat"], cwd=SERVER_ROOT, env=process_env)
                try:
                    run = asyncio.run(drive(base_url, email, database, receiver, worker, args))
                    asyncio.run(drain(database, run))
                    print(f"webhook faults, {args.sessions} sessions:")
                    failures = asyncio.run(check(database, run, receiver, args.sessions))
                finally:
                    beat.terminate()
                    beat.wait(timeout=30)
                    worker.stop()
    finally:
        receiver.stop()
        asyncio.run(drop_database(database))
        redis.Redis.from_url(REDIS_URL).flushdb()
    for failure in failures:
        print(f"FAILED: {failure}")
    if failures:
        raise SystemExit(1)
    print("every event delivered at least once; every attempt accounted for")


if __name__ == "__main__":
    main()
