"""One contract, run against both implementations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from app.services.session_store import (
    MemorySessionStore,
    RedisSessionStore,
    SessionStore,
    SessionStoreUnavailableError,
)


@pytest.fixture
def memory_store() -> SessionStore:
    return MemorySessionStore()


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[SessionStore]:
    store = RedisSessionStore(aioredis.Redis.from_url(redis_url))
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> SessionStore:
    chosen: SessionStore = request.getfixturevalue(f"{request.param}_store")
    return chosen


async def test_set_get_delete(store: SessionStore) -> None:
    assert await store.get("a") is None
    await store.set("a", {"x": 1, "nested": {"y": [1, 2]}}, ttl_seconds=60)
    assert await store.get("a") == {"x": 1, "nested": {"y": [1, 2]}}
    assert await store.delete("a") is True
    assert await store.delete("a") is False
    assert await store.get("a") is None


async def test_values_are_copies(store: SessionStore) -> None:
    value = {"list": [1]}
    await store.set("copy", value, 60)
    value["list"].append(2)
    fetched = await store.get("copy")
    assert fetched == {"list": [1]}


async def test_ttl_expiry(store: SessionStore) -> None:
    await store.set("short", {"v": 1}, ttl_seconds=0.15)
    remaining = await store.ttl("short")
    assert remaining is not None and 0 < remaining <= 0.15
    await asyncio.sleep(0.3)
    assert await store.get("short") is None
    assert await store.ttl("short") is None


async def test_touch_extends_only_existing(store: SessionStore) -> None:
    assert await store.touch("missing", 60) is False
    await store.set("t", {"v": 1}, ttl_seconds=0.2)
    assert await store.touch("t", 60) is True
    await asyncio.sleep(0.3)
    assert await store.get("t") == {"v": 1}


async def test_set_if_absent(store: SessionStore) -> None:
    assert await store.set_if_absent("once", {"v": 1}, 60) is True
    assert await store.set_if_absent("once", {"v": 2}, 60) is False
    assert await store.get("once") == {"v": 1}


async def test_set_if_absent_is_atomic(store: SessionStore) -> None:
    results = await asyncio.gather(*(store.set_if_absent("race", {"n": n}, 60) for n in range(20)))
    assert results.count(True) == 1


async def test_increment_counts_within_ttl(store: SessionStore) -> None:
    counts = await asyncio.gather(*(store.increment("c", 0.3) for _ in range(10)))
    assert sorted(counts) == list(range(1, 11))
    # The window does not slide on later increments.
    await asyncio.sleep(0.4)
    assert await store.increment("c", 0.3) == 1


async def test_ping(store: SessionStore) -> None:
    await store.ping()


async def test_unreachable_redis_raises_domain_error() -> None:
    client = aioredis.Redis.from_url(
        "redis://127.0.0.1:1/0", socket_connect_timeout=0.2, socket_timeout=0.2
    )
    store = RedisSessionStore(client)
    try:
        with pytest.raises(SessionStoreUnavailableError):
            await store.get("x")
        with pytest.raises(SessionStoreUnavailableError):
            await store.ping()
    finally:
        await store.close()
