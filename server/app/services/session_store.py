"""Short-lived shared state (live assessment sessions, revocations, throttles) with TTLs.

One interface, two implementations: in process memory for a single process, Redis when several
API processes must see the same state. Both pass the same contract tests. Values are JSON, so
nothing depends on which one runs.
"""

from __future__ import annotations

import asyncio
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.config import Settings
from app.core.logging import get_logger

logger = get_logger(__name__)

JSONValue = dict[str, Any]


class SessionStoreUnavailableError(RuntimeError):
    """The backing store could not be reached; callers decide how to degrade."""


class SessionStore(ABC):
    backend: str

    @abstractmethod
    async def get(self, key: str) -> JSONValue | None: ...

    async def get_many(self, keys: Sequence[str]) -> list[JSONValue | None]:
        """The values of `keys`, in order (None where missing): one round trip where the store
        allows it."""
        return [await self.get(key) for key in keys]

    @abstractmethod
    async def set(self, key: str, value: JSONValue, ttl_seconds: float) -> None: ...

    @abstractmethod
    async def set_if_absent(self, key: str, value: JSONValue, ttl_seconds: float) -> bool:
        """Store only when the key is missing; True when this call stored it."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove the key; True when it existed."""

    @abstractmethod
    async def touch(self, key: str, ttl_seconds: float) -> bool:
        """Give an existing key a new TTL; False when it does not exist."""

    @abstractmethod
    async def ttl(self, key: str) -> float | None:
        """Seconds left, or None when the key does not exist."""

    @abstractmethod
    async def increment(self, key: str, ttl_seconds: float) -> int:
        """Add one to a counter; the TTL starts with the counter's first increment."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise SessionStoreUnavailableError when the store cannot be reached."""

    async def close(self) -> None:
        return None


class MemorySessionStore(SessionStore):
    """For one process (the embedded default). Expired keys are dropped when touched or swept."""

    backend = "memory"

    def __init__(self) -> None:
        # Values are kept serialised, as in Redis, so callers never share a mutable object.
        self._values: dict[str, tuple[float, str]] = {}
        self._lock = asyncio.Lock()
        self._operations = 0

    def _alive(self, key: str, now: float) -> tuple[float, str] | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._values[key]
            return None
        return entry

    def _sweep(self, now: float) -> None:
        # Amortised clean-up so keys nobody reads again do not accumulate for ever.
        self._operations += 1
        if self._operations % 1024 == 0:
            for key in [k for k, (expires, _) in self._values.items() if expires <= now]:
                del self._values[key]

    async def get(self, key: str) -> JSONValue | None:
        entry = self._alive(key, time.monotonic())
        return None if entry is None else json.loads(entry[1])

    async def set(self, key: str, value: JSONValue, ttl_seconds: float) -> None:
        now = time.monotonic()
        self._sweep(now)
        self._values[key] = (now + ttl_seconds, json.dumps(value))

    async def set_if_absent(self, key: str, value: JSONValue, ttl_seconds: float) -> bool:
        async with self._lock:
            now = time.monotonic()
            if self._alive(key, now) is not None:
                return False
            self._sweep(now)
            self._values[key] = (now + ttl_seconds, json.dumps(value))
            return True

    async def delete(self, key: str) -> bool:
        existed = self._alive(key, time.monotonic()) is not None
        self._values.pop(key, None)
        return existed

    async def touch(self, key: str, ttl_seconds: float) -> bool:
        now = time.monotonic()
        entry = self._alive(key, now)
        if entry is None:
            return False
        self._values[key] = (now + ttl_seconds, entry[1])
        return True

    async def ttl(self, key: str) -> float | None:
        now = time.monotonic()
        entry = self._alive(key, now)
        return None if entry is None else entry[0] - now

    async def increment(self, key: str, ttl_seconds: float) -> int:
        async with self._lock:
            now = time.monotonic()
            entry = self._alive(key, now)
            if entry is None:
                self._sweep(now)
                self._values[key] = (now + ttl_seconds, "1")
                return 1
            count = int(entry[1]) + 1
            self._values[key] = (entry[0], str(count))
            return count

    async def ping(self) -> None:
        return None


class RedisSessionStore(SessionStore):
    backend = "redis"

    def __init__(self, client: aioredis.Redis, key_prefix: str = "metricis:store:") -> None:
        self._redis = client
        self._prefix = key_prefix

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisSessionStore:
        client = aioredis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=settings.REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=settings.REDIS_TIMEOUT_SECONDS,
            health_check_interval=30,
        )
        return cls(client)

    @property
    def connection_pool(self) -> aioredis.ConnectionPool:
        """Shared with the rate limiter, so one process keeps one set of Redis connections."""
        return self._redis.connection_pool

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def get(self, key: str) -> JSONValue | None:
        try:
            raw = await self._redis.get(self._key(key))
        except RedisError as exc:
            raise SessionStoreUnavailableError(str(exc)) from exc
        return None if raw is None else json.loads(raw)

    async def get_many(self, keys: Sequence[str]) -> list[JSONValue | None]:
        try:
            raws = await self._redis.mget([self._key(key) for key in keys])
        except RedisError as exc:
            raise SessionStoreUnavailableError(str(exc)) from exc
        return [None if raw is None else json.loads(raw) for raw in raws]

    async def set(self, key: str, value: JSONValue, ttl_seconds: float) -> None:
        try:
            await self._redis.set(self._key(key), json.dumps(value), px=_millis(ttl_seconds))
        except RedisError as exc:
            raise SessionStoreUnavailableError(str(exc)) from exc

    async def set_if_absent(self, key: str, value: JSONValue, ttl_seconds: float) -> bool:
        try:
            stored = await self._redis.set(
                self._key(key), json.dumps(value), px=_millis(ttl_seconds), nx=True
            )
        except RedisError as exc:
            raise SessionStoreUnavailableError(str(exc)) from exc
        return bool(stored)

    async def delete(self, key: str) -> bool:
        try:
            return bool(await self._redis.delete(self._key(key)))
        except RedisError as exc:
            raise SessionStoreUnavailableError(str(exc)) from exc

    async def touch(self, key: str, ttl_seconds: float) -> bool:
        try:
            return bool(await self._redis.pexpire(self._key(key), _millis(ttl_seconds)))
        except RedisError as exc:
            raise SessionStoreUnavailableError(str(exc)) from exc

    async def ttl(self, key: str) -> float | None:
        try:
            millis = await self._redis.pttl(self._key(key))
        except RedisError as exc:
            raise SessionStoreUnavailableError(str(exc)) from exc
        # -2: no such key; -1: a key without expiry, which this store never writes.
        return None if millis < 0 else millis / 1000

    async def increment(self, key: str, ttl_seconds: float) -> int:
        full_key = self._key(key)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(full_key)
                pipe.pexpire(full_key, _millis(ttl_seconds), nx=True)
                count, _ = await pipe.execute()
        except RedisError as exc:
            raise SessionStoreUnavailableError(str(exc)) from exc
        return int(count)

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except RedisError as exc:
            raise SessionStoreUnavailableError(str(exc)) from exc

    async def close(self) -> None:
        await self._redis.aclose()


async def throttle_count(
    store: SessionStore, key: str, window: timedelta, *, add: bool = False
) -> int:
    """A throttle's counter over `window`, after counting one more event when `add`.

    0 when the store cannot be reached: throttles fail open, like the rate limiter, rather than
    refuse every sign-in while Redis is down."""
    try:
        if add:
            return await store.increment(key, window.total_seconds())
        value: object = await store.get(key)
    except SessionStoreUnavailableError:
        logger.warning("session_store_unavailable", operation="throttle")
        return 0
    return value if isinstance(value, int) else 0


def _millis(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def create_session_store(settings: Settings) -> SessionStore:
    if settings.uses_redis:
        return RedisSessionStore.from_settings(settings)
    return MemorySessionStore()
