from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import SessionStorageBackend, Settings
from app.core.clock import utcnow
from app.main import create_app
from app.services.heartbeats import BEAT_HEARTBEAT, record_heartbeat
from tests.conftest import lifespan_client, make_settings


async def test_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": "0.1.0"}


async def test_detailed_health_without_beat_is_degraded(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/health/detailed")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "degraded"
    assert set(body["dependencies"]) == {"database", "storage", "broker", "beat"}
    for name in ("database", "storage", "broker"):
        assert body["dependencies"][name]["status"] == "ok"
        assert body["dependencies"][name]["latency_ms"] >= 0
    beat = body["dependencies"]["beat"]
    assert beat == {
        "status": "down",
        "latency_ms": beat["latency_ms"],
        "required": False,
        "error": "beat has never ticked",
        "last_seen_at": None,
    }


async def test_detailed_health_with_redis(
    database_url: str, storage_dir: Path, redis_url: str
) -> None:
    settings = make_settings(
        database_url,
        storage_dir,
        SESSION_STORAGE_BACKEND=SessionStorageBackend.REDIS,
        REDIS_URL=redis_url,
    )
    async with lifespan_client(create_app(settings)) as client:
        response = await client.get("/api/health/detailed")
    assert response.status_code == 200
    assert response.json()["dependencies"]["redis"]["status"] == "ok"


async def test_database_down_is_503(storage_dir: Path, is_postgres: bool) -> None:
    url = (
        "postgresql+asyncpg://postgres@127.0.0.1:1/none"
        if is_postgres
        else f"sqlite+aiosqlite:///{storage_dir}/missing-dir/sub/x.db"
    )
    settings = make_settings(url, storage_dir, DATABASE_CONNECT_TIMEOUT_SECONDS=1)
    async with lifespan_client(create_app(settings)) as client:
        response = await client.get("/api/health/detailed")
        liveness = await client.get("/api/health")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "SERVICE_UNAVAILABLE"
    assert error["details"]["dependencies"]["database"]["status"] == "down"
    assert error["details"]["dependencies"]["storage"]["status"] == "ok"
    assert liveness.status_code == 200


async def test_redis_down_is_503(database_url: str, storage_dir: Path) -> None:
    settings = make_settings(
        database_url,
        storage_dir,
        SESSION_STORAGE_BACKEND=SessionStorageBackend.REDIS,
        REDIS_URL="redis://127.0.0.1:1/0",
        REDIS_TIMEOUT_SECONDS=0.2,
    )
    async with lifespan_client(create_app(settings)) as client:
        response = await client.get("/api/health/detailed")
    assert response.status_code == 503
    dependencies = response.json()["error"]["details"]["dependencies"]
    assert dependencies["redis"]["status"] == "down"
    assert dependencies["database"]["status"] == "ok"


async def test_storage_not_writable_is_503(database_url: str, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings = make_settings(database_url, blocker / "storage")
    async with lifespan_client(create_app(settings)) as client:
        response = await client.get("/api/health/detailed")
    assert response.status_code == 503
    assert response.json()["error"]["details"]["dependencies"]["storage"]["status"] == "down"


async def _record_heartbeat(engine: AsyncEngine, beat_at: datetime) -> None:
    # Committed, as a worker would, and outside any test transaction: on SQLite that
    # transaction would hold the write lock.
    async with AsyncSession(engine) as session, session.begin():
        await record_heartbeat(session, BEAT_HEARTBEAT, beat_at)


async def _detailed_health(settings: Settings) -> httpx.Response:
    async with lifespan_client(create_app(settings)) as client:
        return await client.get("/api/health/detailed")


async def test_detailed_health_reports_the_broker_and_a_recent_beat(
    heartbeats: AsyncEngine, settings: Settings
) -> None:
    await _record_heartbeat(heartbeats, utcnow() - timedelta(seconds=5))
    response = await _detailed_health(settings)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["dependencies"]["broker"]["status"] == "ok"
    assert body["dependencies"]["broker"]["latency_ms"] >= 0
    assert body["dependencies"]["beat"]["status"] == "ok"
    assert body["dependencies"]["beat"]["last_seen_at"].endswith("Z")


async def test_a_stale_beat_degrades_without_failing_readiness(
    heartbeats: AsyncEngine, settings: Settings
) -> None:
    stale = utcnow() - timedelta(seconds=settings.beat_stale_after_seconds + 5)
    await _record_heartbeat(heartbeats, stale)
    # A late message never moves the heartbeat backwards.
    await _record_heartbeat(heartbeats, stale - timedelta(hours=1))
    response = await _detailed_health(settings)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    beat = body["dependencies"]["beat"]
    assert beat["status"] == "down" and beat["required"] is False
    assert beat["error"] == "beat has not ticked recently"
    assert beat["last_seen_at"] == stale.isoformat().replace("+00:00", "Z")


async def test_an_unreachable_broker_degrades(database_url: str, storage_dir: Path) -> None:
    settings = make_settings(
        database_url,
        storage_dir,
        CELERY_BROKER_URL="redis://127.0.0.1:1/0",
        REDIS_TIMEOUT_SECONDS=0.2,
    )
    response = await _detailed_health(settings)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["dependencies"]["broker"]["status"] == "down"
    assert body["dependencies"]["database"]["status"] == "ok"
