"""Engine, session factory and the transaction scope every unit of work runs in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from app.config import Settings
from app.core.errors import DomainError
from app.core.events import discard_pending, dispatch_pending
from app.core.logging import get_logger

ResultT = TypeVar("ResultT")
logger = get_logger(__name__)


def _configure_sqlite(engine: AsyncEngine) -> None:
    """Foreign keys, WAL and real transactions on SQLite.

    The sqlite3 driver opens transactions lazily and never for DDL or SAVEPOINT, which breaks
    nested transactions (and the test suite's rollback per test). Taking over BEGIN ourselves is
    the documented fix. Transactions begin IMMEDIATE, taking the write lock up front: a deferred
    transaction that read before writing fails with SQLITE_BUSY when another wrote meanwhile,
    which no retry can fix. Checks that only read pass `execution_options(sqlite_deferred=True)`.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        deferred = connection.get_execution_options().get("sqlite_deferred", False)
        connection.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")


def create_engine(settings: Settings) -> AsyncEngine:
    if settings.is_sqlite:
        engine = create_async_engine(settings.DATABASE_URL, echo=False)
        _configure_sqlite(engine)
        return engine
    connect_args: dict[str, Any] = {}
    if settings.DATABASE_URL.startswith("postgresql+asyncpg"):
        connect_args = {
            "timeout": settings.DATABASE_CONNECT_TIMEOUT_SECONDS,
            "command_timeout": settings.DATABASE_STATEMENT_TIMEOUT_SECONDS,
            "server_settings": {"timezone": "UTC", "application_name": "metricis"},
        }
    engine = create_async_engine(
        settings.DATABASE_URL,
        echo=False,
        pool_size=settings.DATABASE_POOL_SIZE,
        max_overflow=settings.DATABASE_MAX_OVERFLOW,
        # No pre-ping: it cost a round trip on every checkout. A connection the server closed
        # (restart, idle kill) is noticed locally on checkout below; one broken in between
        # fails its request with a retryable 503 and is replaced. Recycling bounds its age.
        pool_pre_ping=False,
        pool_recycle=settings.DATABASE_POOL_RECYCLE_SECONDS,
        pool_timeout=settings.DATABASE_CONNECT_TIMEOUT_SECONDS,
        connect_args=connect_args,
    )
    _discard_closed_connections(engine)
    return engine


def _discard_closed_connections(engine: AsyncEngine) -> None:
    """Refuse, without a round trip, a pooled connection whose socket the server has closed:
    the pool then opens a new one instead of failing the request."""

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(
        dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry, _proxy: Any
    ) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        is_closed = getattr(driver, "is_closed", None)
        if callable(is_closed) and is_closed():
            raise sa_exc.DisconnectionError("the server closed this connection")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


Undo = Callable[[], Awaitable[None]]
_UNDO_KEY = "metricis_undo_on_rollback"

# A commit that failed with one of these may have committed all the same (the connection went
# away after the server received COMMIT): nothing done outside the database is undone then.
_UNKNOWN_OUTCOME = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    ConnectionError,
    TimeoutError,
    asyncio.CancelledError,
)


def undo_on_rollback(session: AsyncSession, undo: Undo) -> None:
    """Run `undo` when the transaction `session` is in does not commit: work done outside the
    database for it (a file written) is then taken back, so the two agree.

    Only under `transaction_scope`, which runs the undos after a rollback and after a commit
    that certainly failed; when a commit's outcome is unknown (the connection was lost during
    it) nothing is undone, and what is left is found by a sweep (e.g. `metricis storage sweep`).
    """
    session.info.setdefault(_UNDO_KEY, []).append(undo)


async def _run_undos(session: AsyncSession) -> None:
    undos: list[Undo] = session.info.pop(_UNDO_KEY, [])
    for undo in undos:
        try:
            await undo()
        except Exception:  # one failed undo must not stop the others
            logger.warning("undo_after_rollback_failed", exc_info=True)


async def _commit(session: AsyncSession) -> None:
    try:
        await session.commit()
    except _UNKNOWN_OUTCOME:
        undos = session.info.pop(_UNDO_KEY, [])
        if undos:
            logger.warning("commit_outcome_unknown_undo_skipped", undos=len(undos))
        raise
    except BaseException:
        await _run_undos(session)
        raise
    session.info.pop(_UNDO_KEY, None)


async def _rollback(session: AsyncSession) -> None:
    try:
        await session.rollback()
    finally:
        await _run_undos(session)


@asynccontextmanager
async def transaction_scope(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """Commit on success, roll back on error, except refusals marked `keep_changes`; what was
    registered with `undo_on_rollback` is undone when the transaction does not commit.

    A context manager, not a generator to iterate: an exception raised in the request must reach
    this code, and `async for` over a generator would not deliver it.
    """
    try:
        yield session
    except DomainError as exc:
        if exc.keep_changes:
            await _commit(session)
            await dispatch_pending(session)
        else:
            await _rollback(session)
            discard_pending(session)
        raise
    except BaseException:
        await _rollback(session)
        discard_pending(session)
        raise
    else:
        await _commit(session)
        await dispatch_pending(session)


def run_with_sessions(
    settings: Settings, work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[ResultT]]
) -> ResultT:
    """Run `work`, which opens transactions of its own, from synchronous code (a worker task
    that commits in batches). The engine lives only as long as the call, as below."""

    async def run() -> ResultT:
        engine = create_engine(settings)
        try:
            return await work(create_sessionmaker(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def run_in_transaction(
    settings: Settings, work: Callable[[AsyncSession], Awaitable[ResultT]]
) -> ResultT:
    """Run `work` in one transaction from synchronous code (a command, a worker task).

    The engine lives only as long as the call: its pooled connections belong to the event loop
    `asyncio.run` creates, which is gone afterwards.
    """

    async def run() -> ResultT:
        engine = create_engine(settings)
        try:
            async with create_sessionmaker(engine)() as session, transaction_scope(session):
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())
