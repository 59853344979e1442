"""The database itself refuses to change or remove audit events, on every backend.

Each refused statement runs in a SAVEPOINT, so the failure leaves the test's transaction usable;
the tests then check that nothing changed and that writing goes on.
"""

from __future__ import annotations

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import AuditEvent
from app.services.audit import canonical_event, verify_chain
from tests.audit.helpers import record_many, stored_events

STATEMENTS = {
    "update-one-column": "UPDATE audit_events SET action = 'tampered' WHERE sequence = 2",
    "update-json": "UPDATE audit_events SET after = NULL WHERE sequence = 2",
    "update-hash": "UPDATE audit_events SET hash = prev_hash",
    "update-no-op": "UPDATE audit_events SET action = action WHERE sequence = 1",
    "update-all": "UPDATE audit_events SET reason = 'bulk'",
    "delete-one": "DELETE FROM audit_events WHERE sequence = 3",
    "delete-all": "DELETE FROM audit_events",
}


@pytest.fixture
async def three_events(empty_chain: AsyncSession) -> list[AuditEvent]:
    await record_many(empty_chain, 3)
    return await stored_events(empty_chain)


async def _assert_unchanged_and_writable(session: AsyncSession, events: list[AuditEvent]) -> None:
    stored = await stored_events(session)
    assert [canonical_event(event) for event in stored] == [
        canonical_event(event) for event in events
    ]
    assert [(event.id, event.hash) for event in stored] == [
        (event.id, event.hash) for event in events
    ]
    (next_event,) = await record_many(session, 1)
    assert next_event.sequence == len(events) + 1
    result = await verify_chain(session)
    assert result.valid, result
    assert result.events_checked == len(events) + 1


@pytest.mark.parametrize("statement", list(STATEMENTS.values()), ids=list(STATEMENTS))
async def test_sql_update_and_delete_are_refused(
    empty_chain: AsyncSession, three_events: list[AuditEvent], statement: str
) -> None:
    with pytest.raises(DBAPIError, match="audit_events is append-only"):
        async with empty_chain.begin_nested():
            await empty_chain.execute(text(statement))
    await _assert_unchanged_and_writable(empty_chain, three_events)


async def test_orm_update_statement_is_refused(
    empty_chain: AsyncSession, three_events: list[AuditEvent]
) -> None:
    with pytest.raises(DBAPIError, match="UPDATE refused"):
        async with empty_chain.begin_nested():
            await empty_chain.execute(
                update(AuditEvent)
                .where(AuditEvent.sequence == 1)
                .values(after={"forged": True})
                .execution_options(synchronize_session=False)
            )
    await _assert_unchanged_and_writable(empty_chain, three_events)


async def test_orm_delete_statement_is_refused(
    empty_chain: AsyncSession, three_events: list[AuditEvent]
) -> None:
    with pytest.raises(DBAPIError, match="DELETE refused"):
        async with empty_chain.begin_nested():
            await empty_chain.execute(
                delete(AuditEvent).execution_options(synchronize_session=False)
            )
    await _assert_unchanged_and_writable(empty_chain, three_events)


async def test_modifying_a_loaded_event_fails_at_flush(
    empty_chain: AsyncSession, three_events: list[AuditEvent]
) -> None:
    with pytest.raises(DBAPIError, match="UPDATE refused"):
        async with empty_chain.begin_nested():
            event = await empty_chain.get(AuditEvent, three_events[0].id)
            assert event is not None
            event.reason = "edited through the ORM"
            await empty_chain.flush()
    empty_chain.expunge_all()
    await _assert_unchanged_and_writable(empty_chain, three_events)


async def test_deleting_a_loaded_event_fails_at_flush(
    empty_chain: AsyncSession, three_events: list[AuditEvent]
) -> None:
    with pytest.raises(DBAPIError, match="DELETE refused"):
        async with empty_chain.begin_nested():
            event = await empty_chain.get(AuditEvent, three_events[2].id)
            assert event is not None
            await empty_chain.delete(event)
            await empty_chain.flush()
    empty_chain.expunge_all()
    await _assert_unchanged_and_writable(empty_chain, three_events)


async def test_truncate_is_refused_on_postgres(
    empty_chain: AsyncSession, three_events: list[AuditEvent], is_postgres: bool
) -> None:
    if not is_postgres:
        pytest.skip("SQLite has no TRUNCATE")
    with pytest.raises(DBAPIError, match="TRUNCATE refused"):
        async with empty_chain.begin_nested():
            await empty_chain.execute(text("TRUNCATE audit_events"))
    await _assert_unchanged_and_writable(empty_chain, three_events)


async def test_triggers_are_installed(db_session: AsyncSession, is_postgres: bool) -> None:
    """The refusal comes from the schema the migration built, not from the application."""
    if is_postgres:
        rows = (
            await db_session.execute(
                text(
                    "SELECT tgname, tgenabled::text FROM pg_trigger "
                    "WHERE tgrelid = 'audit_events'::regclass AND NOT tgisinternal "
                    "ORDER BY tgname"
                )
            )
        ).all()
        # 'O': fires in origin and local mode, i.e. always for ordinary sessions.
        assert [tuple(row) for row in rows] == [
            ("audit_events_no_truncate", "O"),
            ("audit_events_no_update_delete", "O"),
        ]
    else:
        names = (
            await db_session.scalars(
                text(
                    "SELECT name FROM sqlite_master "
                    "WHERE type = 'trigger' AND tbl_name = 'audit_events' ORDER BY name"
                )
            )
        ).all()
        assert list(names) == ["audit_events_no_delete", "audit_events_no_update"]
