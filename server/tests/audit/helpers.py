"""Shared helpers for the audit-trail tests: reading the chain as stored, and tampering with it.

Tampering bypasses the append-only triggers only inside the caller's transaction, which the
`db_session` fixture rolls back after each test: on PostgreSQL with
`SET LOCAL session_replication_role = replica` (the test role is a superuser), on SQLite by
dropping the triggers (DDL is transactional there) and recreating them from their stored SQL.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import AuditCategory, AuditChainHead, AuditEvent
from app.services.audit import CHAIN_HEAD_ID, AuditContext, record_event


@dataclass(frozen=True, slots=True)
class Head:
    last_sequence: int
    last_hash: str


async def read_head(session: AsyncSession) -> Head:
    row = (
        await session.execute(
            select(AuditChainHead.last_sequence, AuditChainHead.last_hash).where(
                AuditChainHead.id == CHAIN_HEAD_ID
            )
        )
    ).one()
    return Head(int(row[0]), str(row[1]))


async def stored_events(session: AsyncSession, *, after_sequence: int = 0) -> list[AuditEvent]:
    """The events as the database holds them, in chain order, not as the identity map has them."""
    session.expunge_all()
    result = await session.scalars(
        select(AuditEvent)
        .where(AuditEvent.sequence > after_sequence)
        .order_by(AuditEvent.sequence)
        .execution_options(populate_existing=True)
    )
    events = list(result.all())
    session.expunge_all()
    return events


async def stored_event(session: AsyncSession, event_id: uuid.UUID) -> AuditEvent:
    session.expunge_all()
    event = (
        await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.id == event_id)
            .execution_options(populate_existing=True)
        )
    ).one()
    session.expunge_all()
    return event


async def table_stats(session: AsyncSession) -> tuple[int, int, int, int, int]:
    """count, min(sequence), max(sequence), distinct prev_hash, distinct hash over the table."""
    row = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.min(AuditEvent.sequence), 0),
                func.coalesce(func.max(AuditEvent.sequence), 0),
                func.count(func.distinct(AuditEvent.prev_hash)),
                func.count(func.distinct(AuditEvent.hash)),
            ).select_from(AuditEvent)
        )
    ).one()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4])


async def record_many(
    session: AsyncSession,
    count: int,
    *,
    context: AuditContext | None = None,
    action: str = "test.event",
    category: AuditCategory = AuditCategory.DATA,
    after: Mapping[str, Any] | None = None,
) -> list[AuditEvent]:
    events = []
    for index in range(count):
        events.append(
            await record_event(
                session,
                context or AuditContext.system(),
                action=action,
                category=category,
                entity_type="probe",
                entity_id=f"probe-{index}",
                after=after if after is not None else {"index": index},
            )
        )
    return events


@asynccontextmanager
async def append_only_bypassed(session: AsyncSession, is_postgres: bool) -> AsyncIterator[None]:
    """Lift the append-only triggers for this block, in the current transaction.

    They are restored when the block ends normally; when it raises, the test's transaction is
    rolled back anyway (restoring them), and restoring here could only mask the error.
    """
    if is_postgres:
        await session.execute(text("SET LOCAL session_replication_role = replica"))
        yield
        await session.execute(text("SET LOCAL session_replication_role = origin"))
        return
    triggers: Sequence[Any] = (
        await session.execute(
            text(
                "SELECT name, sql FROM sqlite_master "
                "WHERE type = 'trigger' AND tbl_name = 'audit_events' ORDER BY name"
            )
        )
    ).all()
    assert {str(name) for name, _ in triggers} == {
        "audit_events_no_update",
        "audit_events_no_delete",
    }
    for name, _ in triggers:
        await session.execute(text(f'DROP TRIGGER "{name}"'))
    yield
    for _, sql in triggers:
        await session.execute(text(str(sql)))


async def tamper(
    session: AsyncSession, is_postgres: bool, at_sequence: int, /, **values: Any
) -> None:
    """Overwrite columns of one stored event, bypassing the triggers."""
    async with append_only_bypassed(session, is_postgres):
        result = await session.execute(
            update(AuditEvent)
            .where(AuditEvent.sequence == at_sequence)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    assert result.rowcount == 1  # type: ignore[attr-defined]
    session.expunge_all()


async def delete_stored(session: AsyncSession, is_postgres: bool, *sequences: int) -> None:
    async with append_only_bypassed(session, is_postgres):
        for sequence in sequences:
            await session.execute(
                text("DELETE FROM audit_events WHERE sequence = :sequence"),
                {"sequence": sequence},
            )
    session.expunge_all()
