"""Failure behaviour: the database unreachable answers 503 quickly and recovers by itself;
Redis unreachable while configured degrades without failing requests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.api.dependencies import get_db
from app.config import SessionStorageBackend, Settings
from app.db.session import transaction_scope
from app.main import create_app
from app.models.user import UserRole
from tests import factories
from tests.conftest import lifespan_client, make_settings
from tests.factories import simple_rt_trials


class TcpRelay:
    """A loopback TCP relay to PostgreSQL that can be switched off (refuse) and back on."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.port = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        for task in (
            asyncio.create_task(pump(reader, upstream_writer)),
            asyncio.create_task(pump(upstream_reader, writer)),
        ):
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A port that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_refused_database_answers_503_quickly(storage_dir: Path, is_postgres: bool) -> None:
    if not is_postgres:
        pytest.skip("a network database only")
    settings = make_settings("postgresql+asyncpg://postgres@127.0.0.1:1/none", storage_dir)
    async with lifespan_client(create_app(settings)) as client:
        started = time.perf_counter()
        response = await client.post("/api/auth/login", json={"email": "a@b.org", "password": "x"})
        elapsed = time.perf_counter() - started
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert response.headers["Retry-After"] == "5"
    assert elapsed < 3


async def test_silent_database_answers_503_within_the_connect_timeout(
    storage_dir: Path, is_postgres: bool, silent_port: int
) -> None:
    if not is_postgres:
        pytest.skip("a network database only")
    settings = make_settings(
        f"postgresql+asyncpg://postgres@127.0.0.1:{silent_port}/none",
        storage_dir,
        DATABASE_CONNECT_TIMEOUT_SECONDS=1,
    )
    async with lifespan_client(create_app(settings)) as client:
        started = time.perf_counter()
        response = await client.post("/api/auth/login", json={"email": "a@b.org", "password": "x"})
        elapsed = time.perf_counter() - started
    assert response.status_code == 503
    assert elapsed < 5


async def test_recovers_by_itself_when_the_database_returns(
    storage_dir: Path, is_postgres: bool, database_url: str, migrated_engine: AsyncEngine
) -> None:
    if not is_postgres:
        pytest.skip("a network database only")
    relay = TcpRelay(target_port=5432)
    await relay.start()
    url = database_url.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}")
    settings = make_settings(url, storage_dir, DATABASE_CONNECT_TIMEOUT_SECONDS=1)
    try:
        async with lifespan_client(create_app(settings)) as client:
            assert (await client.get("/api/health/detailed")).status_code == 200
            await (
                relay.stop()
            )  # the database goes away: open connections break, new ones are refused
            down = await client.post("/api/auth/login", json={"email": "a@b.org", "password": "x"})
            assert down.status_code == 503
            await relay.start()  # back on the same port
            for _ in range(20):
                back = await client.post(
                    "/api/auth/login", json={"email": "a@b.org", "password": "x"}
                )
                if back.status_code != 503:
                    break
                await asyncio.sleep(0.1)
            assert back.status_code == 401  # the database answered: no such account
    finally:
        await relay.stop()


async def test_unreachable_redis_keeps_sign_in_reads_and_submissions_working(
    database_url: str, storage_dir: Path, db_session: AsyncSession
) -> None:
    settings: Settings = make_settings(
        database_url,
        storage_dir,
        SESSION_STORAGE_BACKEND=SessionStorageBackend.REDIS,
        REDIS_URL="redis://127.0.0.1:1/0",
        REDIS_TIMEOUT_SECONDS=0.2,
        RATE_LIMIT_PER_MINUTE=5,
    )
    app: FastAPI = create_app(settings)

    async def test_db() -> AsyncIterator[AsyncSession]:
        async with transaction_scope(db_session) as session:
            yield session

    app.dependency_overrides[get_db] = test_db
    async with lifespan_client(app) as client:
        researcher = await factories.staff(db_session, client, UserRole.ADMIN)
        for _ in range(8):  # over the rate limit, which fails open without Redis
            assert (await client.get("/api/studies", headers=researcher.headers)).status_code == 200
        study = await client.post(
            "/api/studies",
            headers=researcher.headers,
            json={"code": "REDIS-DOWN", "name": "x", "consent_mode": "none"},
        )
        study_id = study.json()["id"]
        await client.post(
            f"/api/studies/{study_id}/status", headers=researcher.headers, json={"status": "active"}
        )
        battery = await client.post(
            "/api/batteries",
            headers=researcher.headers,
            json={
                "study_id": study_id,
                "name": "B",
                "tasks": [{"module_id": "simple-rt", "config": {}}],
            },
        )
        participant = await client.post(
            "/api/participants",
            headers=researcher.headers,
            json={"study_id": study_id, "participant_id": "R1"},
        )
        started = await client.post(
            "/api/session/start",
            headers=researcher.headers,
            json={"participant_id": participant.json()["id"], "battery_id": battery.json()["id"]},
        )
        assert started.status_code == 201, started.text
        session_id = started.json()["session_id"]
        submitted = await client.post(
            "/api/submit",
            headers={**researcher.headers, "X-Session-ID": session_id},
            json={"session_id": session_id, "trials": simple_rt_trials()},
        )
        assert submitted.status_code == 201, submitted.text
        health = await client.get("/api/health/detailed")
    assert health.status_code == 503
    assert health.json()["error"]["details"]["dependencies"]["redis"]["status"] == "down"
