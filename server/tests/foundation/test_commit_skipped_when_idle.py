"""A request's transaction is committed only when there is something to commit, and an object
added without a flush is still something."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, event, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.session import create_sessionmaker, transaction_scope
from app.models.user import User


async def test_an_unused_session_sends_nothing_and_an_added_object_is_committed(
    migrated_engine: AsyncEngine,
) -> None:
    engine = migrated_engine
    sessionmaker = create_sessionmaker(engine)
    began: list[object] = []

    def note_begin(connection: Connection) -> None:
        began.append(connection)

    event.listen(engine.sync_engine, "begin", note_begin)
    email = f"idle-{uuid.uuid4().hex[:8]}@example.org"
    try:
        async with sessionmaker() as session, transaction_scope(session):
            pass
        assert began == []

        async with sessionmaker() as session, transaction_scope(session):
            session.add(User(email=email, name="Added, never flushed"))
        assert len(began) == 1

        async with sessionmaker() as session:
            stored = await session.scalar(select(User).where(User.email == email))
            assert stored is not None and stored.name == "Added, never flushed"
    finally:
        async with sessionmaker() as session, transaction_scope(session):
            await session.execute(delete(User).where(User.email == email))
        event.remove(engine.sync_engine, "begin", note_begin)
