"""Shared helpers for the audit-trail tests: the chain settings they use, reading events and
links as stored, and tampering with them as the database owner could.

Tampering bypasses the append-only triggers only inside the caller's transaction, which the
`db_session` fixture rolls back after each test: on PostgreSQL with
`SET LOCAL session_replication_role = replica` (the test role is a superuser), on SQLite by
dropping the triggers (DDL is transactional there) and recreating them from their stored SQL.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import (
    CHAIN_STATE_ID,
    AuditCategory,
    AuditChainLink,
    AuditChainState,
    AuditEvent,
)
from app.services.audit import (
    AuditContext,
    ChainKey,
    ChainKeyring,
    ChainSettings,
    FileCheckpointStore,
    RecordedEvent,
    record_event,
)

KEY_1 = ChainKey("k1", b"\x01" * 32)
KEY_2 = ChainKey("k2", b"\x02" * 32)
APPEND_ONLY_TABLES = ("audit_events", "audit_chain_links")


def encoded(key: ChainKey) -> str:
    """The key as AUDIT_CHAIN_KEYS spells it."""
    return f"{key.key_id}:{base64.b64encode(key.secret).decode()}"


def chain_settings(checkpoint_dir: Path, *keys: ChainKey, **options: Any) -> ChainSettings:
    values: dict[str, Any] = {"gap_wait_seconds": 1.0, **options}
    return ChainSettings(
        keyring=ChainKeyring(list(keys) or [KEY_1]),
        checkpoints=FileCheckpointStore(checkpoint_dir),
        **values,
    )


@dataclass(frozen=True, slots=True)
class State:
    last_sequence: int
    last_mac: str
    chain_id: uuid.UUID
    last_checkpoint_sequence: int


async def read_state(session: AsyncSession) -> State:
    row = (
        await session.execute(
            select(
                AuditChainState.last_sequence,
                AuditChainState.last_mac,
                AuditChainState.chain_id,
                AuditChainState.last_checkpoint_sequence,
            ).where(AuditChainState.id == CHAIN_STATE_ID)
        )
    ).one()
    return State(int(row[0]), str(row[1]), row[2], int(row[3]))


async def set_state(session: AsyncSession, **values: Any) -> None:
    await session.execute(
        update(AuditChainState)
        .where(AuditChainState.id == CHAIN_STATE_ID)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def stored_events(session: AsyncSession, *, after_sequence: int = 0) -> list[AuditEvent]:
    """The events as the database holds them, in sequence order, not as the identity map has
    them."""
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


async def stored_links(session: AsyncSession, *, after_sequence: int = 0) -> list[AuditChainLink]:
    session.expunge_all()
    links = list(
        (
            await session.scalars(
                select(AuditChainLink)
                .where(AuditChainLink.sequence > after_sequence)
                .order_by(AuditChainLink.sequence)
                .execution_options(populate_existing=True)
            )
        ).all()
    )
    session.expunge_all()
    return links


async def event_count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


async def record_many(
    session: AsyncSession,
    count: int,
    *,
    context: AuditContext | None = None,
    action: str = "test.event",
    category: AuditCategory = AuditCategory.DATA,
    after: Mapping[str, Any] | None = None,
) -> list[RecordedEvent]:
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
    """Lift the triggers of the audit tables for this block, in the current transaction, as
    their owner could.

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
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                "AND tbl_name IN ('audit_events', 'audit_chain_links') ORDER BY name"
            )
        )
    ).all()
    assert {str(name) for name, _ in triggers} == {
        "audit_events_no_update",
        "audit_events_no_delete",
        "audit_chain_links_no_update",
        "audit_chain_links_no_delete",
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


async def tamper_link(
    session: AsyncSession, is_postgres: bool, at_sequence: int, /, **values: Any
) -> None:
    async with append_only_bypassed(session, is_postgres):
        result = await session.execute(
            update(AuditChainLink)
            .where(AuditChainLink.sequence == at_sequence)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    assert result.rowcount == 1  # type: ignore[attr-defined]
    session.expunge_all()


async def delete_stored(session: AsyncSession, is_postgres: bool, *sequences: int) -> None:
    """Delete events (not their links)."""
    async with append_only_bypassed(session, is_postgres):
        for sequence in sequences:
            await session.execute(
                text("DELETE FROM audit_events WHERE sequence = :sequence"),
                {"sequence": sequence},
            )
    session.expunge_all()


async def delete_links(session: AsyncSession, is_postgres: bool, *sequences: int) -> None:
    async with append_only_bypassed(session, is_postgres):
        for sequence in sequences:
            await session.execute(
                text("DELETE FROM audit_chain_links WHERE sequence = :sequence"),
                {"sequence": sequence},
            )
    session.expunge_all()
