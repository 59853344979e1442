from __future__ import annotations

import json
import logging
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


def test_uvicorn_lines_go_through_the_json_pipeline_without_colours(
    database_url: str, storage_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    create_app(make_settings(database_url, storage_dir, LOG_FORMAT="json", LOG_LEVEL="info"))
    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]", 42, extra={"color_message": "Started \x1b[36m%d\x1b[0m"}
    )
    lines = [
        json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")
    ]
    started = [line for line in lines if line.get("logger") == "uvicorn.error"]
    assert started and started[-1]["event"] == "Started server process [42]"
    assert "color_message" not in started[-1]


async def test_request_id_on_error_responses(database_url: str, storage_dir: Path) -> None:
    app = create_app(make_settings(database_url, storage_dir))
    async with lifespan_client(app) as client:
        response = await client.get("/api/nope", headers={"X-Request-ID": "req-404"})
    assert response.status_code == 404
    assert response.headers["X-Request-ID"] == "req-404"
