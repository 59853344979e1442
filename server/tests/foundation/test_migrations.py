"""Migrations run both ways on the suite's database, and agree with the models."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import migrations
from app.db.session import create_engine
from app.models import Base
from tests.conftest import (
    POSTGRES_URL,
    drop_postgres_database,
    ensure_postgres_database,
    make_settings,
    reset_postgres_schema,
)


@pytest.fixture
async def scratch_engine(
    is_postgres: bool, tmp_path: Path, storage_dir: Path
) -> AsyncIterator[AsyncEngine]:
    """An empty database of the suite's kind, apart from the one the other tests use."""
    if is_postgres:
        url = POSTGRES_URL + "_migrations"
        assert await ensure_postgres_database(url)
        await reset_postgres_schema(url)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
    engine = create_engine(make_settings(url, storage_dir))
    yield engine
    await engine.dispose()
    if is_postgres:
        await drop_postgres_database(url)


def _run(connection: Connection, action: str, revision: str) -> None:
    config = migrations.alembic_config(connection=connection)
    getattr(command, action)(config, revision)


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


async def test_upgrade_downgrade_upgrade(scratch_engine: AsyncEngine) -> None:
    async with scratch_engine.begin() as connection:
        await connection.run_sync(_run, "upgrade", "head")
        after_first_upgrade = await connection.run_sync(_tables)
    async with scratch_engine.begin() as connection:
        await connection.run_sync(_run, "downgrade", "base")
        assert await connection.run_sync(_tables) == set()
    async with scratch_engine.begin() as connection:
        await connection.run_sync(_run, "upgrade", "head")
        assert await connection.run_sync(_tables) == after_first_upgrade
    assert after_first_upgrade == set(Base.metadata.tables)


async def test_each_revision_steps_down_and_up(scratch_engine: AsyncEngine) -> None:
    script = ScriptDirectory.from_config(migrations.alembic_config())
    revisions = list(reversed(list(script.walk_revisions())))
    async with scratch_engine.begin() as connection:
        for revision in revisions:
            await connection.run_sync(_run, "upgrade", revision.revision)
            down_revision = revision.down_revision
            assert down_revision is None or isinstance(down_revision, str)
            await connection.run_sync(_run, "downgrade", down_revision or "base")
            await connection.run_sync(_run, "upgrade", revision.revision)


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "render_as_batch": True}
    )
    return list(compare_metadata(context, Base.metadata))


async def test_models_and_migrations_agree(migrated_engine: AsyncEngine) -> None:
    async with migrated_engine.connect() as connection:
        differences = await connection.run_sync(_differences)
    assert differences == [], f"autogenerate finds differences: {differences}"


def test_single_head() -> None:
    script = ScriptDirectory.from_config(migrations.alembic_config())
    assert len(script.get_heads()) <= 1
