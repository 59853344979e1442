from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.main import create_app
from tests.conftest import lifespan_client, make_settings


async def test_request_id_generated_echoed_and_logged(
    database_url: str, storage_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    app = create_app(make_settings(database_url, storage_dir, LOG_FORMAT="json", LOG_LEVEL="info"))
    async with lifespan_client(app) as client:
        generated = await client.get("/api/health")
        given = await client.get("/api/health", headers={"X-Request-ID": "abc-123"})
        forged = await client.get("/api/health", headers={"X-Request-ID": "bad id\nwith newline"})
    assert len(generated.headers["X-Request-ID"]) == 32
    assert given.headers["X-Request-ID"] == "abc-123"
    assert forged.headers["X-Request-ID"] not in ("bad id\nwith newline", "")

    lines = [
        json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")
    ]
    request_lines = [line for line in lines if line.get("event") == "request"]
    assert {line["request_id"] for line in request_lines} >= {
        "abc-123",
        generated.headers["X-Request-ID"],
    }
    assert all(line["level"] for line in request_lines)
    assert not any("color_message" in line for line in lines)


async def test_request_id_on_error_responses(database_url: str, storage_dir: Path) -> None:
    app = create_app(make_settings(database_url, storage_dir))
    async with lifespan_client(app) as client:
        response = await client.get("/api/nope", headers={"X-Request-ID": "req-404"})
    assert response.status_code == 404
    assert response.headers["X-Request-ID"] == "req-404"
