"""Test fixtures: a real database (PostgreSQL when reachable, else SQLite), one transaction per
test rolled back at the end, the real Redis on its own database number, and an ASGI client with
the lifespan run.

Environment:
- METRICIS_TEST_DATABASE=postgres|sqlite picks the backend (default: PostgreSQL when reachable).
- METRICIS_REQUIRE_SERVICES=1 turns a missing PostgreSQL, Redis or S3 server into a failure, not a
  skip.
- METRICIS_TEST_POSTGRES_URL / METRICIS_TEST_REDIS_URL override where they are;
  METRICIS_TEST_S3_PORT the port of the S3 API server the run starts (tests/s3.py).
"""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis
import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from app.api.dependencies import get_db, request_transaction
from app.api.routers.sync import get_item_sessionmaker
from app.config import Environment, Settings
from app.db import migrations
from app.db.session import create_engine
from app.main import create_app
from app.models.worker import WorkerHeartbeat
from app.services.sync import ItemSessionFactory

# moto's S3 server for the object storage tests, started only when a test asks for it.
pytest_plugins = ("tests.s3",)

# One database per test run, dropped at the end, so runs side by side never share a schema.
POSTGRES_URL = os.environ.get(
    "METRICIS_TEST_POSTGRES_URL",
    f"postgresql+asyncpg://postgres@127.0.0.1:5432/metricis_test_{os.getpid()}",
)
# A Redis database number of its own (8-15), emptied around each test that uses Redis. Runs side
# by side on one machine must never share one: a test's Celery worker would take the other run's
# tasks. So a run claims a free number with a key in database 0 that expires on its own (a run
# that was killed frees its number later) and is deleted when the run ends.
REDIS_CLAIM_SECONDS = 3 * 3600
_REDIS_CLAIM_PREFIX = "metricis-tests:redis-db:"
_REDIS_DATABASES = range(8, 16)


def _claim_redis_database(server: str) -> int:
    """The first free database number in 8-15, claimed for this process (pid % 8 if none answer)."""
    fallback = 8 + os.getpid() % 8
    try:
        admin = redis.Redis.from_url(f"{server}/0", socket_connect_timeout=1, socket_timeout=2)
        try:
            for number in _REDIS_DATABASES:
                claimed = admin.set(
                    f"{_REDIS_CLAIM_PREFIX}{number}", os.getpid(), nx=True, ex=REDIS_CLAIM_SECONDS
                )
                if claimed:
                    return number
        finally:
            admin.close()
    except redis.RedisError:
        pass  # no Redis: the Redis fixtures skip, or fail under METRICIS_REQUIRE_SERVICES
    return fallback


def _release_redis_database(server: str, number: int) -> None:
    try:
        admin = redis.Redis.from_url(f"{server}/0", socket_connect_timeout=1, socket_timeout=2)
        try:
            key = f"{_REDIS_CLAIM_PREFIX}{number}"
            if admin.get(key) == str(os.getpid()).encode():
                admin.delete(key)
        finally:
            admin.close()
    except redis.RedisError:
        pass


_REDIS_SERVER = "redis://127.0.0.1:6379"
_CLAIMED_REDIS_DATABASE: int | None = None
if "METRICIS_TEST_REDIS_URL" in os.environ:
    REDIS_URL = os.environ["METRICIS_TEST_REDIS_URL"]
else:
    _CLAIMED_REDIS_DATABASE = _claim_redis_database(_REDIS_SERVER)
    REDIS_URL = f"{_REDIS_SERVER}/{_CLAIMED_REDIS_DATABASE}"
REQUIRE_SERVICES = os.environ.get("METRICIS_REQUIRE_SERVICES") == "1"


def _asyncpg_dsn(url: str, database: str | None = None) -> str:
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    if database is not None:
        dsn = dsn.rsplit("/", 1)[0] + "/" + database
    return dsn


async def ensure_postgres_database(url: str) -> bool:
    """Create the test database if needed; False when PostgreSQL is not reachable."""
    name = url.rsplit("/", 1)[1]
    try:
        admin = await asyncpg.connect(_asyncpg_dsn(url, "postgres"), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return True


async def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(_asyncpg_dsn(url, "postgres"), timeout=3)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def reset_postgres_schema(url: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await connection.close()


async def redis_available(url: str) -> bool:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        await client.ping()
    except Exception:
        return False
    finally:
        await client.aclose()
    return True


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@functools.cache
def chosen_backend() -> str:
    """ "postgres" or "sqlite", decided once per run (and the PostgreSQL database created)."""
    wanted = os.environ.get("METRICIS_TEST_DATABASE", "auto")
    if wanted not in ("postgres", "sqlite", "auto"):
        raise pytest.UsageError(f"METRICIS_TEST_DATABASE must be postgres or sqlite, not {wanted}")
    if wanted in ("postgres", "auto"):
        if asyncio.run(ensure_postgres_database(POSTGRES_URL)):
            return "postgres"
        if wanted == "postgres" or REQUIRE_SERVICES:
            raise pytest.UsageError(f"PostgreSQL is required but not reachable at {POSTGRES_URL}")
    return "sqlite"


def pytest_sessionstart(session: pytest.Session) -> None:
    # Decided before any event loop runs (the probe uses one of its own).
    chosen_backend()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if chosen_backend() == "postgres":
        asyncio.run(drop_postgres_database(POSTGRES_URL))
    if _CLAIMED_REDIS_DATABASE is not None:
        _release_redis_database(_REDIS_SERVER, _CLAIMED_REDIS_DATABASE)


def pytest_report_header(config: pytest.Config) -> list[str]:
    if chosen_backend() == "postgres":
        database = f"PostgreSQL, database {POSTGRES_URL.rsplit('/', 1)[1]} (dropped at the end)"
    else:
        database = "SQLite, a temporary file"
    return [f"metricis: tests run on {database}; Redis {REDIS_URL}"]


@pytest.fixture(scope="session")
async def database_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    if chosen_backend() == "postgres":
        yield POSTGRES_URL  # dropped by pytest_sessionfinish
        return
    path = tmp_path_factory.mktemp("db") / "metricis-test.db"
    yield f"sqlite+aiosqlite:///{path}"


@pytest.fixture(scope="session")
def is_postgres(database_url: str) -> bool:
    return database_url.startswith("postgresql")


@pytest.fixture(scope="session")
def storage_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("storage")


def make_settings(database_url: str, storage_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "ENVIRONMENT": Environment.TEST,
        "DATABASE_URL": database_url,
        "STORAGE_DIR": storage_dir,
        "RATE_LIMIT_PER_MINUTE": 100_000,
        "AUTH_RATE_LIMIT_PER_MINUTE": 100_000,
        "AUTHENTICATED_RATE_LIMIT_PER_MINUTE": 100_000,
        # The suite starts hundreds of apps in one process: frozen objects would never be freed.
        "GC_FREEZE_AT_STARTUP": False,
        "LOG_LEVEL": "warning",
        "REDIS_URL": REDIS_URL,
        # Cheap hashing keeps the suite fast; production refuses such parameters.
        "PASSWORD_HASH_TIME_COST": 1,
        "PASSWORD_HASH_MEMORY_KIB": 1024,
        "PASSWORD_HASH_PARALLELISM": 1,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture(scope="session")
async def migrated_engine(database_url: str, storage_dir: Path) -> AsyncIterator[AsyncEngine]:
    """The test database at the latest migration: built by Alembic, never by create_all."""
    if database_url.startswith("postgresql"):
        await reset_postgres_schema(database_url)
    engine = create_engine(make_settings(database_url, storage_dir))
    async with engine.begin() as connection:
        await connection.run_sync(lambda sync_connection: _upgrade_with_connection(sync_connection))
    yield engine
    await engine.dispose()


def _upgrade_with_connection(connection: object) -> None:
    from alembic import command

    command.upgrade(migrations.alembic_config(connection=connection), "head")  # type: ignore[arg-type]


@pytest.fixture
async def isolated_settings(tmp_path: Path, storage_dir: Path) -> AsyncIterator[Settings]:
    """Settings on a database of the run's backend built for this test alone, dropped after it.

    For tests that commit for real from several connections at once: nothing they commit (audit
    events cannot be deleted) reaches the database the other tests share.
    """
    if chosen_backend() == "postgres":
        url = f"{POSTGRES_URL}_{uuid.uuid4().hex[:8]}"
        await ensure_postgres_database(url)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'isolated.db'}"
    settings = make_settings(url, storage_dir)
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_with_connection)
        yield settings
    finally:
        await engine.dispose()
        if url.startswith("postgresql"):
            await drop_postgres_database(url)


@pytest.fixture
async def heartbeats(migrated_engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """The test database as other connections (worker processes, health checks) see it: the
    heartbeats a test commits there are removed afterwards."""
    await _clear_heartbeats(migrated_engine)
    yield migrated_engine
    await _clear_heartbeats(migrated_engine)


async def _clear_heartbeats(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(delete(WorkerHeartbeat))


@pytest.fixture
async def db_connection(migrated_engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection inside an outer transaction that is rolled back after the test."""
    async with migrated_engine.connect() as connection:
        transaction = await connection.begin()
        try:
            yield connection
        finally:
            if transaction.is_active:
                await transaction.rollback()


@pytest.fixture
async def db_session(db_connection: AsyncConnection) -> AsyncIterator[AsyncSession]:
    """The session the application uses during the test: its commits become savepoints."""
    session = AsyncSession(
        bind=db_connection,
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
        autoflush=False,
    )
    try:
        yield session
    finally:
        await session.close()


@pytest.fixture
def settings(database_url: str, storage_dir: Path) -> Settings:
    return make_settings(database_url, storage_dir)


@pytest.fixture
def app(settings: Settings, db_session: AsyncSession) -> FastAPI:
    application = create_app(settings)

    async def test_db(request: Request) -> AsyncIterator[AsyncSession]:
        async with request_transaction(request, db_session):
            yield db_session

    application.dependency_overrides[get_db] = test_db
    return application


def run_sync_items_in_test_session(app: FastAPI, db_session: AsyncSession) -> None:
    """The batch sync endpoint opens one database session per item from `app.state.sessionmaker`,
    which would neither see the test's uncommitted rows nor be rolled back with them. Every item
    runs in the test's own session instead; that session joins the outer transaction with
    savepoints, so each item's commit or rollback is a savepoint released or rolled back, and the
    per-item isolation the endpoint promises is still what the tests exercise."""

    @asynccontextmanager
    async def test_session() -> AsyncIterator[AsyncSession]:
        yield db_session

    def item_sessions() -> ItemSessionFactory:
        return test_session

    app.dependency_overrides[get_item_sessionmaker] = item_sessions


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with lifespan_client(app) as http_client:
        yield http_client


class lifespan_client:  # noqa: N801 - used like a function
    """An httpx client on the ASGI app with its lifespan started and stopped."""

    def __init__(self, app: FastAPI, **client_options: object) -> None:
        self.app = app
        self.client_options = client_options
        self._lifespan = app.router.lifespan_context(app)
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> httpx.AsyncClient:
        await self._lifespan.__aenter__()
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        self._client = httpx.AsyncClient(
            transport=transport,
            base_url="http://testserver",
            **self.client_options,  # type: ignore[arg-type]
        )
        return self._client

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._client is not None
        await self._client.aclose()
        await self._lifespan.__aexit__(None, None, None)


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """The real Redis, on its own database number, emptied before and after."""
    if not await redis_available(REDIS_URL):
        if REQUIRE_SERVICES:
            pytest.fail(f"Redis is required but not reachable at {REDIS_URL}")
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    client = aioredis.Redis.from_url(REDIS_URL)
    await client.flushdb()
    try:
        yield REDIS_URL
    finally:
        await client.flushdb()
        await client.aclose()


@pytest.fixture
def restore_env() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
