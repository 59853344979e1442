from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from app.config import SessionStorageBackend, Settings
from app.core.security import TokenType, create_token
from app.main import create_app
from tests.conftest import lifespan_client, make_settings


def limited_app(database_url: str, storage_dir: Path, **overrides: object):  # type: ignore[no-untyped-def]
    return create_app(
        make_settings(
            database_url,
            storage_dir,
            RATE_LIMIT_PER_MINUTE=5,
            AUTH_RATE_LIMIT_PER_MINUTE=2,
            AUTHENTICATED_RATE_LIMIT_PER_MINUTE=3,
            **overrides,
        )
    )


async def clear_of_minute_boundary() -> None:
    """The sliding window weighs the previous minute, so a burst that straddles a minute boundary
    sees its count drop. Bursts here take well under a second: start them clear of a boundary."""
    seconds_into_minute = time.time() % 60
    if seconds_into_minute > 55:
        await asyncio.sleep(60.2 - seconds_into_minute)


async def exhaust(
    client: httpx.AsyncClient, path: str, allowed: int, headers: dict[str, str] | None = None
) -> httpx.Response:
    await clear_of_minute_boundary()
    for remaining in range(allowed - 1, -1, -1):
        response = await client.get(path, headers=headers)
        assert response.headers["X-RateLimit-Limit"] == str(allowed)
        assert response.headers["X-RateLimit-Remaining"] == str(remaining)
        assert int(response.headers["X-RateLimit-Reset"]) >= int(time.time())
    return await client.get(path, headers=headers)


def bearer(settings: Settings, token_type: TokenType, subject: str | None = None) -> dict[str, str]:
    issued = create_token(
        settings,
        subject=subject or str(uuid.uuid4()),
        token_type=token_type,
        lifetime=timedelta(minutes=5),
    )
    return {"Authorization": f"Bearer {issued.token}"}


async def assert_limited(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "RATE_LIMITED"
    assert response.json()["error"]["details"]["limit_per_minute"] == limit
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["X-RateLimit-Remaining"] == "0"


async def test_default_limit_headers_and_429_in_memory(
    database_url: str, storage_dir: Path
) -> None:
    async with lifespan_client(limited_app(database_url, storage_dir)) as client:
        await assert_limited(await exhaust(client, "/api/anything", 5), 5)
        # The sign-in limit is counted separately and is stricter.
        await assert_limited(await exhaust(client, "/api/auth/login", 2), 2)


@pytest.mark.parametrize(
    "path",
    [
        "/api/auth/login",
        "/api/auth/refresh",
        "/api/auth/2fa/verify",
        "/api/auth/participant",
        "/api/auth/magic-link",
        "/api/auth/magic-link/verify",
    ],
)
async def test_every_sign_in_route_is_in_the_strict_bucket(
    database_url: str, storage_dir: Path, path: str
) -> None:
    async with lifespan_client(limited_app(database_url, storage_dir)) as client:
        await assert_limited(await exhaust(client, path, 2), 2)


async def test_signed_in_callers_are_limited_per_principal_not_per_address(
    database_url: str, storage_dir: Path
) -> None:
    settings = make_settings(database_url, storage_dir)
    coordinator = bearer(settings, TokenType.ACCESS)
    colleague = bearer(settings, TokenType.ACCESS)
    participant = bearer(settings, TokenType.PARTICIPANT_ACCESS)
    async with lifespan_client(limited_app(database_url, storage_dir)) as client:
        # /me is ordinary authenticated traffic, not the sign-in bucket.
        await assert_limited(await exhaust(client, "/api/auth/me", 3, coordinator), 3)
        # Same address, other principals: budgets of their own, and anonymous traffic too.
        await assert_limited(await exhaust(client, "/api/x", 3, colleague), 3)
        await assert_limited(await exhaust(client, "/api/x", 3, participant), 3)
        await assert_limited(await exhaust(client, "/api/x", 5), 5)


async def test_a_forged_or_unusable_token_counts_as_anonymous(
    database_url: str, storage_dir: Path
) -> None:
    other_key = make_settings(database_url, storage_dir, JWT_SECRET_KEY="another-key-" + "x" * 40)
    forged = bearer(other_key, TokenType.ACCESS)
    refresh = bearer(make_settings(database_url, storage_dir), TokenType.REFRESH)
    await clear_of_minute_boundary()
    async with lifespan_client(limited_app(database_url, storage_dir)) as client:
        for index in range(5):
            headers = forged if index % 2 else refresh
            assert (await client.get("/api/x", headers=headers)).status_code == 404
        # Forged and refresh tokens spent the address's anonymous budget.
        await assert_limited(await client.get("/api/x"), 5)


async def test_limit_is_per_client(database_url: str, storage_dir: Path) -> None:
    app = limited_app(database_url, storage_dir)
    async with lifespan_client(app) as client:
        await exhaust(client, "/api/x", 5)
    other = httpx.ASGITransport(app=app, client=("10.9.9.9", 1234))
    async with httpx.AsyncClient(transport=other, base_url="http://t") as client:
        assert (await client.get("/api/x")).status_code == 404


async def test_forwarded_for_is_ignored_from_untrusted_peers(
    database_url: str, storage_dir: Path
) -> None:
    await clear_of_minute_boundary()
    async with lifespan_client(limited_app(database_url, storage_dir)) as client:
        for index in range(5):
            await client.get("/api/x", headers={"X-Forwarded-For": f"1.2.3.{index}"})
        response = await client.get("/api/x", headers={"X-Forwarded-For": "9.9.9.9"})
    assert response.status_code == 429


async def test_health_is_not_rate_limited(database_url: str, storage_dir: Path) -> None:
    async with lifespan_client(limited_app(database_url, storage_dir)) as client:
        statuses = {(await client.get("/api/health")).status_code for _ in range(8)}
    assert statuses == {200}


async def test_limits_are_shared_through_redis(
    database_url: str, storage_dir: Path, redis_url: str
) -> None:
    overrides = {"SESSION_STORAGE_BACKEND": SessionStorageBackend.REDIS, "REDIS_URL": redis_url}
    first = limited_app(database_url, storage_dir, **overrides)
    second = limited_app(database_url, storage_dir, **overrides)
    await clear_of_minute_boundary()
    async with lifespan_client(first) as client:
        for _ in range(5):
            assert (await client.get("/api/x")).status_code == 404
    # Another API process sees the same count.
    async with lifespan_client(second) as client:
        await assert_limited(await client.get("/api/x"), 5)


async def test_unreachable_redis_lets_requests_through(
    database_url: str, storage_dir: Path
) -> None:
    app = limited_app(
        database_url,
        storage_dir,
        SESSION_STORAGE_BACKEND=SessionStorageBackend.REDIS,
        REDIS_URL="redis://127.0.0.1:1/0",
        REDIS_TIMEOUT_SECONDS=0.2,
    )
    async with lifespan_client(app) as client:
        responses = [await client.get("/api/health") for _ in range(2)]
        limited_path = [await client.get("/api/x") for _ in range(7)]
    assert all(r.status_code == 200 for r in responses)
    assert all(r.status_code == 404 for r in limited_path)
    assert all("X-RateLimit-Limit" not in r.headers for r in limited_path)


@pytest.mark.parametrize("method", ["OPTIONS"])
async def test_preflight_is_not_counted(database_url: str, storage_dir: Path, method: str) -> None:
    async with lifespan_client(limited_app(database_url, storage_dir)) as client:
        for _ in range(7):
            response = await client.request(
                method,
                "/api/x",
                headers={
                    "Origin": "http://localhost:5173",
                    "Access-Control-Request-Method": "GET",
                },
            )
            assert response.status_code == 200
