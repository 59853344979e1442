from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.models.audit import AUDIT_EVENT_SEQUENCE, GENESIS_MAC
from app.services.audit import ChainSettings
from tests.audit.helpers import append_only_bypassed, chain_settings, set_state


@pytest.fixture
def chain(tmp_path: Path) -> ChainSettings:
    """The chain as these tests key it (key k1), with checkpoints in a folder of the test's own."""
    return chain_settings(tmp_path / "checkpoints")


@pytest.fixture
async def empty_chain(
    db_session: AsyncSession, is_postgres: bool, migrated_engine: AsyncEngine
) -> AsyncIterator[AsyncSession]:
    """`db_session` on an empty trail (no events, no links, the state at the genesis) inside the
    rolled-back transaction, numbering events from 1 again.

    Tests that commit for real (the concurrency tests) leave events behind; this gives the other
    tests a known chain whatever ran before them. PostgreSQL's sequence is not transactional: it
    is set back to 1 here and restored afterwards, once the test's events are rolled back.
    """
    async with append_only_bypassed(db_session, is_postgres):
        await db_session.execute(text("DELETE FROM audit_chain_links"))
        await db_session.execute(text("DELETE FROM audit_events"))
    await set_state(
        db_session,
        last_sequence=0,
        last_mac=GENESIS_MAC,
        last_checkpoint_sequence=0,
        last_checkpoint_at=None,
    )
    db_session.expunge_all()
    saved: tuple[int, bool] | None = None
    if is_postgres:
        row = (
            await db_session.execute(
                text("SELECT last_value, is_called FROM audit_events_sequence_seq")
            )
        ).one()
        saved = (int(row[0]), bool(row[1]))
        await db_session.execute(text(f"SELECT setval('{AUDIT_EVENT_SEQUENCE}', 1, false)"))
    yield db_session
    if saved is not None:
        async with migrated_engine.connect() as connection:
            await connection.execute(
                text(f"SELECT setval('{AUDIT_EVENT_SEQUENCE}', :value, :called)"),
                {"value": saved[0], "called": saved[1]},
            )
            await connection.commit()
