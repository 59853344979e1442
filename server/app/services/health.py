"""Dependency checks behind GET /api/health/detailed."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.services.session_store import SessionStore

CHECK_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class DependencyStatus:
    name: str
    status: str  # "ok" | "down"
    latency_ms: float
    required: bool
    error: str | None = None


async def _timed(
    name: str, required: bool, check: Callable[[], Awaitable[None]]
) -> DependencyStatus:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
    except Exception as exc:
        error = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        return DependencyStatus(name, "down", _elapsed_ms(started), required, error)
    return DependencyStatus(name, "ok", _elapsed_ms(started), required)


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


async def check_dependencies(
    engine: AsyncEngine, session_store: SessionStore, storage_dir: Path
) -> list[DependencyStatus]:
    checks = [
        _timed("database", True, lambda: check_database(engine)),
        _timed("storage", True, lambda: check_storage(storage_dir)),
    ]
    if session_store.backend == "redis":
        checks.append(_timed("redis", True, session_store.ping))
    return list(await asyncio.gather(*checks))
