"""Failed sign-ins counted in the real Redis keep no typed email there, in keys or values."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from app.config import SessionStorageBackend, Settings
from tests.auth.conftest import Accounts, assert_error
from tests.conftest import make_settings

WRONG_PASSWORD = "Wrong-Password-123456"


@pytest.fixture
def settings(database_url: str, storage_dir: Path, redis_url: str) -> Settings:
    return make_settings(
        database_url,
        storage_dir,
        SESSION_STORAGE_BACKEND=SessionStorageBackend.REDIS,
        REDIS_URL=redis_url,
    )


async def _everything_in_redis(redis_url: str) -> str:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        parts = []
        async for key in client.scan_iter(count=1000):
            parts.append(key)
            if await client.type(key) == "string":
                parts.append(str(await client.get(key)))
        return "\n".join(parts).lower()
    finally:
        await client.aclose()


async def test_failed_sign_ins_are_counted_under_a_keyed_hash(
    client: httpx.AsyncClient, accounts: Accounts, redis_url: str
) -> None:
    account = await accounts.create()
    unknown = f"Ghost-{uuid.uuid4().hex[:8]}@Example.org"
    wrong = {"email": account.email, "password": WRONG_PASSWORD}
    assert_error(await client.post("/api/auth/login", json=wrong), 401)
    for _ in range(4):
        refused = await client.post(
            "/api/auth/login", json={"email": unknown, "password": WRONG_PASSWORD}
        )
        assert_error(refused, 401)

    stored = await _everything_in_redis(redis_url)
    assert "login-fail" in stored  # the counters are there...
    for typed in (unknown.lower(), unknown.lower().split("@")[0], account.email):
        assert typed not in stored  # ...but not the addresses typed

    # Still one counter per address, whatever its case: the fifth failure locks it.
    locked = await client.post(
        "/api/auth/login", json={"email": unknown.upper(), "password": WRONG_PASSWORD}
    )
    assert_error(locked, 423, "ACCOUNT_LOCKED")
    assert unknown.lower() not in await _everything_in_redis(redis_url)
