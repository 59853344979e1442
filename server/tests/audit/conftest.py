from __future__ import annotations

import pytest
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import GENESIS_HASH, AuditChainHead
from app.services.audit import CHAIN_HEAD_ID
from tests.audit.helpers import append_only_bypassed


@pytest.fixture
async def empty_chain(db_session: AsyncSession, is_postgres: bool) -> AsyncSession:
    """`db_session` on a chain emptied back to its seeded state, inside the rolled-back transaction.

    Tests that commit for real (the concurrency tests) leave events behind; this gives the other
    tests a known chain starting at the genesis hash whatever ran before them.
    """
    async with append_only_bypassed(db_session, is_postgres):
        await db_session.execute(text("DELETE FROM audit_events"))
    await db_session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == CHAIN_HEAD_ID)
        .values(last_sequence=0, last_hash=GENESIS_HASH)
        .execution_options(synchronize_session=False)
    )
    db_session.expunge_all()
    return db_session
