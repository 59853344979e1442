"""Every error leaves in the envelope of docs/api-conventions.md, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field
from sqlalchemy import select

from app.api.dependencies import SessionDep
from app.config import Settings
from app.core.errors import ConflictError
from app.main import create_app
from app.models.item_bank import ItemBankVersion
from tests.conftest import lifespan_client, make_settings


class EchoBody(BaseModel):
    email: str = Field(min_length=3)
    count: int = Field(ge=0)


def add_probe_routes(app: FastAPI) -> None:
    @app.post("/api/_probe/echo")
    async def echo(body: EchoBody) -> EchoBody:
        return body

    @app.get("/api/_probe/crash")
    async def crash() -> None:
        raise RuntimeError("secret internal detail")

    @app.get("/api/_probe/conflict")
    async def conflict() -> None:
        raise ConflictError("Already there", details={"existing": "x"})


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    return error  # type: ignore[no-any-return]


async def test_unknown_route_is_404_envelope(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.get("/api/does-not-exist"), 404, "NOT_FOUND")


async def test_wrong_method_is_405_envelope(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.delete("/api/health"), 405, "METHOD_NOT_ALLOWED")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/api/session/end", "POST"),
        ("GET", "/api/session/start", "POST"),
        ("PATCH", "/api/participants/import", "POST"),
        ("DELETE", "/api/consent/sign", "POST"),
    ],
)
async def test_a_fixed_path_with_the_wrong_method_is_405_not_an_id(
    client: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    # Path ids are UUIDs in the route itself, so `end` is never taken for a session id.
    response = await client.request(method, path)
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == allowed


async def test_a_malformed_id_in_a_path_is_404(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.get("/api/session/not-a-uuid"), 404, "NOT_FOUND")


async def test_validation_error_has_per_field_details_without_values(app: FastAPI) -> None:
    add_probe_routes(app)
    async with lifespan_client(app) as client:
        response = await client.post(
            "/api/_probe/echo", json={"email": "s3cret-value", "count": -5}
        )
    error = assert_envelope(response, 422, "VALIDATION_ERROR")
    fields = {item["field"] for item in error["details"]["errors"]}  # type: ignore[index]
    assert fields == {"body.count"}
    assert "s3cret" not in response.text


async def test_malformed_json_is_422_not_500(app: FastAPI) -> None:
    add_probe_routes(app)
    async with lifespan_client(app) as client:
        response = await client.post(
            "/api/_probe/echo", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert_envelope(response, 422, "VALIDATION_ERROR")


async def test_domain_error_keeps_code_and_details(app: FastAPI) -> None:
    add_probe_routes(app)
    async with lifespan_client(app) as client:
        response = await client.get("/api/_probe/conflict")
    error = assert_envelope(response, 409, "CONFLICT")
    assert error["details"] == {"existing": "x"}


async def test_unexpected_exception_is_500_without_trace(app: FastAPI) -> None:
    add_probe_routes(app)
    async with lifespan_client(app) as client:
        response = await client.get("/api/_probe/crash")
    assert_envelope(response, 500, "INTERNAL_ERROR")
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text


async def test_body_over_limit_is_413(database_url: str, storage_dir: Path) -> None:
    settings: Settings = make_settings(database_url, storage_dir, MAX_REQUEST_BODY_BYTES=2048)
    app = create_app(settings)
    add_probe_routes(app)
    async with lifespan_client(app) as client:
        declared = await client.post(
            "/api/_probe/echo",
            content=b"x" * 4096,
            headers={"content-type": "application/json"},
        )

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(8):
                yield b" " * 1024

        streamed = await client.post(
            "/api/_probe/echo", content=chunks(), headers={"content-type": "application/json"}
        )
        small = await client.post("/api/_probe/echo", json={"email": "abc", "count": 1})
    assert_envelope(declared, 413, "PAYLOAD_TOO_LARGE")
    assert_envelope(streamed, 413, "PAYLOAD_TOO_LARGE")
    assert small.status_code == 200


class _ServerShuttingDownError(Exception):
    sqlstate = "57P03"  # cannot_connect_now, as PostgreSQL says while it restarts


async def test_database_shutting_down_is_503_not_500(app: FastAPI) -> None:
    from sqlalchemy import exc as sa_exc

    @app.get("/api/_probe/shutting-down")
    async def shutting_down() -> None:
        raise sa_exc.DBAPIError("SELECT 1", None, _ServerShuttingDownError("shutting down"))

    async with lifespan_client(app) as client:
        response = await client.get("/api/_probe/shutting-down")
    error = assert_envelope(response, 503, "SERVICE_UNAVAILABLE")
    assert error["details"] == {"retry_after_seconds": 5}
    assert response.headers["Retry-After"] == "5"


async def test_an_integer_too_large_for_its_column_is_422_not_500(
    app: FastAPI, is_postgres: bool
) -> None:
    """The safety net under every route: PostgreSQL's driver refuses an integer beyond the
    column's type before sending it, SQLite's raises a bare OverflowError beyond 64 bits."""

    @app.get("/api/_probe/version/{number}")
    async def version(number: int, session: SessionDep) -> None:
        await session.execute(select(ItemBankVersion.id).where(ItemBankVersion.version == number))

    async with lifespan_client(app) as client:
        # PostgreSQL's column is 32 bits, SQLite's integers 64.
        for number in (3_000_000_000, 10**30) if is_postgres else (10**30,):
            response = await client.get(f"/api/_probe/version/{number}")
            assert_envelope(response, 422, "VALIDATION_ERROR")
        fine = await client.get("/api/_probe/version/3")
        assert fine.status_code == 200, fine.text


async def test_an_overflow_in_our_own_code_stays_a_500(app: FastAPI) -> None:
    import math

    @app.get("/api/_probe/overflow")
    async def overflow() -> None:
        math.exp(10_000)

    async with lifespan_client(app) as client:
        response = await client.get("/api/_probe/overflow")
    assert_envelope(response, 500, "INTERNAL_ERROR")
