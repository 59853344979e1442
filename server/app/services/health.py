"""Dependency checks behind GET /api/health/detailed."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from kombu import Connection
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings, StorageBackend
from app.core.clock import utcnow
from app.services import file_storage
from app.services.heartbeats import BEAT_HEARTBEAT, last_heartbeat
from app.services.session_store import SessionStore

CHECK_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class DependencyStatus:
    name: str
    status: str  # "ok" | "down"
    latency_ms: float
    required: bool
    error: str | None = None
    last_seen_at: datetime | None = None


class StaleHeartbeatError(Exception):
    """Beat has not ticked within three of its intervals, or never (`last_seen_at` None)."""

    def __init__(self, message: str, last_seen_at: datetime | None) -> None:
        super().__init__(message)
        self.message = message
        self.last_seen_at = last_seen_at


async def _timed(
    name: str, required: bool, check: Callable[[], Awaitable[datetime | None]]
) -> DependencyStatus:
    started = time.perf_counter()
    try:
        last_seen_at = await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
    except StaleHeartbeatError as exc:
        elapsed = _elapsed_ms(started)
        return DependencyStatus(name, "down", elapsed, required, exc.message, exc.last_seen_at)
    except Exception as exc:
        error = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        return DependencyStatus(name, "down", _elapsed_ms(started), required, error)
    return DependencyStatus(name, "ok", _elapsed_ms(started), required, None, last_seen_at)


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


async def check_database(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        # Read-only: on SQLite it must not queue behind writers for the write lock.
        await connection.execution_options(sqlite_deferred=True)
        await connection.execute(text("SELECT 1"))


def _write_probe(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / f".health-{uuid.uuid4().hex}"
    probe.write_bytes(b"ok")
    probe.unlink()


async def check_storage(directory: Path) -> None:
    await asyncio.to_thread(_write_probe, directory)


async def check_object_storage(settings: Settings) -> None:
    """HeadBucket with the configured credentials; a failure names only the exception's type."""
    await asyncio.to_thread(file_storage.check_object_storage, settings)


def _connect_to_broker(settings: Settings) -> None:
    with Connection(
        settings.broker_url, transport_options=settings.broker_transport_options
    ) as connection:
        connection.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_SECONDS)
        # The embedded broker "connects" without touching its folders: check they are usable.
        if settings.uses_embedded_broker:
            for folder in settings.broker_transport_options.values():
                if isinstance(folder, str):
                    _write_probe(Path(folder))


async def check_broker(settings: Settings) -> None:
    await asyncio.to_thread(_connect_to_broker, settings)


async def check_beat(engine: AsyncEngine, stale_after_seconds: float) -> datetime:
    async with engine.connect() as connection:
        await connection.execution_options(sqlite_deferred=True)
        async with AsyncSession(bind=connection) as session:
            beat_at = await last_heartbeat(session, BEAT_HEARTBEAT)
    if beat_at is None:
        raise StaleHeartbeatError("beat has never ticked", None)
    if utcnow() - beat_at > timedelta(seconds=stale_after_seconds):
        raise StaleHeartbeatError("beat has not ticked recently", beat_at)
    return beat_at


async def check_dependencies(
    engine: AsyncEngine, session_store: SessionStore, settings: Settings
) -> list[DependencyStatus]:
    """Database, storage (the local folder, and the bucket with STORAGE_BACKEND=s3) and Redis (as
    session store) are required: without them no request can be served. The broker and beat
    only delay background work, so they degrade the status."""
    checks = [
        _timed("database", True, lambda: check_database(engine)),
        _timed("storage", True, lambda: check_storage(settings.STORAGE_DIR)),
        _timed("broker", False, lambda: check_broker(settings)),
        _timed("beat", False, lambda: check_beat(engine, settings.beat_stale_after_seconds)),
    ]
    if settings.STORAGE_BACKEND is StorageBackend.S3:
        checks.append(_timed("object_storage", True, lambda: check_object_storage(settings)))
    if session_store.backend == "redis":
        checks.append(_timed("redis", True, session_store.ping))
    return list(await asyncio.gather(*checks))
