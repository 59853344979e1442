from __future__ import annotations

from pathlib import Path

import httpx

from app.config import SessionStorageBackend
from app.main import create_app
from tests.conftest import lifespan_client, make_settings


async def test_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": "0.1.0"}


async def test_detailed_health_all_up(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/health/detailed")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["dependencies"]) == {"database", "storage"}
    for dependency in body["dependencies"].values():
        assert dependency["status"] == "ok"
        assert dependency["latency_ms"] >= 0


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
