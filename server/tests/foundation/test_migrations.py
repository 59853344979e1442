"""Migrations run both ways on the suite's database, and agree with the models."""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import migrations
from app.db.base import JSONType, UTCDateTime
from app.db.session import create_engine, create_sessionmaker
from app.models import Base
from app.models.audit import AuditCategory, AuditChainState
from app.services.audit import (
    AuditContext,
    ChainKey,
    ChainKeyring,
    ChainSettings,
    FileCheckpointStore,
    chain_pending_events,
    record_event,
    verify_chain,
)
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


# --- 0006: the unkeyed audit chain becomes the keyed one ---------------------------------------


def _legacy_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """SHA-256 over the previous hash and the canonical event, as revisions 0001-0005 wrote it."""
    payload = {
        "id": str(row["id"]),
        "sequence": row["sequence"],
        "occurred_at": row["occurred_at"].isoformat(timespec="microseconds"),
        "actor_type": row["actor_type"],
        "actor_id": row["actor_id"],
        "action": row["action"],
        "category": row["category"],
        "entity_type": None,
        "entity_id": None,
        "study_id": None,
        "participant_id": None,
        "before": None,
        "after": row["after"],
        "ip": None,
        "user_agent": None,
        "request_id": None,
        "reason": None,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical.encode()).hexdigest()


def _write_legacy_trail(connection: Connection, count: int, *, tamper_at: int | None) -> None:
    prev_hash = "0" * 64
    events = sa.table(
        "audit_events",
        *(
            sa.column(name, type_)
            for name, type_ in (
                ("id", sa.Uuid()),
                ("sequence", sa.Integer()),
                ("occurred_at", UTCDateTime()),
                ("actor_type", sa.String()),
                ("actor_id", sa.String()),
                ("action", sa.String()),
                ("category", sa.String()),
                ("after", JSONType),
                ("prev_hash", sa.String()),
                ("hash", sa.String()),
            )
        ),
    )
    for sequence in range(1, count + 1):
        row: dict[str, Any] = {
            "id": uuid.uuid4(),
            "sequence": sequence,
            "occurred_at": datetime(2026, 11, 30, 12, 0, sequence, 123456, tzinfo=UTC),
            "actor_type": "system",
            "actor_id": "system",
            "action": f"legacy.event_{sequence}",
            "category": "data",
            "after": {"score": sequence + 0.5, "items": [1, 2]},
        }
        event_hash = _legacy_hash(prev_hash, row)
        if sequence == tamper_at:
            row["after"] = {"score": 0, "items": [1, 2]}
        connection.execute(sa.insert(events).values(**row, prev_hash=prev_hash, hash=event_hash))
        prev_hash = event_hash
    connection.execute(
        sa.text("UPDATE audit_chain_head SET last_sequence = :n, last_hash = :h"),
        {"n": count, "h": prev_hash},
    )


async def test_0006_keys_the_existing_trail_and_0005_rebuilds_it(
    scratch_engine: AsyncEngine, storage_dir: Path, tmp_path: Path, is_postgres: bool
) -> None:
    async with scratch_engine.begin() as connection:
        await connection.run_sync(_run, "upgrade", "0005")
        await connection.run_sync(_write_legacy_trail, 4, tamper_at=None)
    async with scratch_engine.begin() as connection:
        await connection.run_sync(_run, "upgrade", "head")

    chain = ChainSettings(
        keyring=ChainKeyring([ChainKey("k1", b"\x01" * 32)]),
        checkpoints=FileCheckpointStore(tmp_path / "checkpoints"),
    )
    sessions = create_sessionmaker(scratch_engine)
    async with sessions() as session, session.begin():
        assert (await session.scalar(select(AuditChainState.last_sequence))) == 0
        run = await chain_pending_events(session, chain)
        assert (run.linked_events, run.last_sequence) == (4, 4)
        recorded = await record_event(
            session, AuditContext.system(), action="after.upgrade", category=AuditCategory.DATA
        )
        assert recorded.sequence == 5
    async with sessions() as session, session.begin():
        result = await verify_chain(session, chain)
        assert result.valid, result
        assert result.events_checked == 5
    if is_postgres:
        # A rolled-back number leaves a gap, which the way down closes by renumbering.
        async with sessions() as session, session.begin():
            await record_event(
                session, AuditContext.system(), action="rolled.back", category=AuditCategory.DATA
            )
            await session.rollback()
        async with sessions() as session, session.begin():
            assert (
                await record_event(
                    session, AuditContext.system(), action="last", category=AuditCategory.DATA
                )
            ).sequence == 7

    async with scratch_engine.begin() as connection:
        await connection.run_sync(_run, "downgrade", "0005")
        rows = (
            await connection.execute(
                sa.text("SELECT sequence, prev_hash, hash FROM audit_events ORDER BY sequence")
            )
        ).all()
        head = (
            await connection.execute(
                sa.text("SELECT last_sequence, last_hash FROM audit_chain_head")
            )
        ).one()
    count = 6 if is_postgres else 5
    assert [row[0] for row in rows] == list(range(1, count + 1))
    assert rows[0][1] == "0" * 64
    assert all(later[1] == earlier[2] for earlier, later in itertools.pairwise(rows))
    assert tuple(head) == (count, rows[-1][2])
    # The way up again verifies what the way down wrote.
    async with scratch_engine.begin() as connection:
        await connection.run_sync(_run, "upgrade", "head")


async def test_0006_refuses_to_key_an_altered_trail(scratch_engine: AsyncEngine) -> None:
    async with scratch_engine.begin() as connection:
        await connection.run_sync(_run, "upgrade", "0005")
        await connection.run_sync(_write_legacy_trail, 4, tamper_at=3)
    with pytest.raises(RuntimeError, match="does not verify at sequence 3: hash does not match"):
        async with scratch_engine.begin() as connection:
            await connection.run_sync(_run, "upgrade", "head")
    async with scratch_engine.connect() as connection:
        version = await connection.scalar(sa.text("SELECT version_num FROM alembic_version"))
    assert version == "0005"
