"""The database itself refuses to change or remove audit events and the links of their chain, on
every backend.

Each refused statement runs in a SAVEPOINT, so the failure leaves the test's transaction usable;
the tests then check that nothing changed and that writing goes on.
"""

from __future__ import annotations

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import AuditEvent
from app.services.audit import ChainSettings, canonical_event, chain_pending_events, verify_chain
from tests.audit.helpers import record_many, stored_events, stored_links

STATEMENTS = {
    "update-one-column": "UPDATE audit_events SET action = 'tampered' WHERE sequence = 2",
    "update-json": "UPDATE audit_events SET after = NULL WHERE sequence = 2",
    "update-sequence": "UPDATE audit_events SET sequence = sequence + 10",
    "update-no-op": "UPDATE audit_events SET action = action WHERE sequence = 1",
    "update-all": "UPDATE audit_events SET reason = 'bulk'",
    "delete-one": "DELETE FROM audit_events WHERE sequence = 3",
    "delete-all": "DELETE FROM audit_events",
    "update-link-mac": "UPDATE audit_chain_links SET mac = prev_mac WHERE sequence = 2",
    "update-link-key": "UPDATE audit_chain_links SET key_id = 'k9'",
    "delete-link": "DELETE FROM audit_chain_links WHERE sequence = 3",
    "delete-links": "DELETE FROM audit_chain_links",
}


@pytest.fixture
async def three_events(empty_chain: AsyncSession, chain: ChainSettings) -> list[AuditEvent]:
    await record_many(empty_chain, 3)
    await chain_pending_events(empty_chain, chain)
    return await stored_events(empty_chain)


async def _assert_unchanged_and_writable(
    session: AsyncSession, chain: ChainSettings, events: list[AuditEvent]
) -> None:
    stored = await stored_events(session)
    assert [canonical_event(event) for event in stored] == [
        canonical_event(event) for event in events
    ]
    assert [link.event_id for link in await stored_links(session)] == [event.id for event in events]
    (next_event,) = await record_many(session, 1)
    assert next_event.sequence == len(events) + 1
    result = await verify_chain(session, chain)
    assert result.valid, result
    assert result.events_checked == len(events) + 1


@pytest.mark.parametrize("statement", list(STATEMENTS.values()), ids=list(STATEMENTS))
async def test_sql_update_and_delete_are_refused(
    empty_chain: AsyncSession, chain: ChainSettings, three_events: list[AuditEvent], statement: str
) -> None:
    table = "audit_chain_links" if "audit_chain_links" in statement else "audit_events"
    with pytest.raises(DBAPIError, match=f"{table} is append-only"):
        async with empty_chain.begin_nested():
            await empty_chain.execute(text(statement))
    await _assert_unchanged_and_writable(empty_chain, chain, three_events)


async def test_orm_update_statement_is_refused(
    empty_chain: AsyncSession, chain: ChainSettings, three_events: list[AuditEvent]
) -> None:
    with pytest.raises(DBAPIError, match="UPDATE refused"):
        async with empty_chain.begin_nested():
            await empty_chain.execute(
                update(AuditEvent)
                .where(AuditEvent.sequence == 1)
                .values(after={"forged": True})
                .execution_options(synchronize_session=False)
            )
    await _assert_unchanged_and_writable(empty_chain, chain, three_events)


async def test_orm_delete_statement_is_refused(
    empty_chain: AsyncSession, chain: ChainSettings, three_events: list[AuditEvent]
) -> None:
    with pytest.raises(DBAPIError, match="DELETE refused"):
        async with empty_chain.begin_nested():
            await empty_chain.execute(
                delete(AuditEvent).execution_options(synchronize_session=False)
            )
    await _assert_unchanged_and_writable(empty_chain, chain, three_events)


async def test_modifying_a_loaded_event_fails_at_flush(
    empty_chain: AsyncSession, chain: ChainSettings, three_events: list[AuditEvent]
) -> None:
    with pytest.raises(DBAPIError, match="UPDATE refused"):
        async with empty_chain.begin_nested():
            event = await empty_chain.get(AuditEvent, three_events[0].id)
            assert event is not None
            event.reason = "edited through the ORM"
            await empty_chain.flush()
    empty_chain.expunge_all()
    await _assert_unchanged_and_writable(empty_chain, chain, three_events)


async def test_deleting_a_loaded_event_fails_at_flush(
    empty_chain: AsyncSession, chain: ChainSettings, three_events: list[AuditEvent]
) -> None:
    with pytest.raises(DBAPIError, match="DELETE refused"):
        async with empty_chain.begin_nested():
            event = await empty_chain.get(AuditEvent, three_events[2].id)
            assert event is not None
            await empty_chain.delete(event)
            await empty_chain.flush()
    empty_chain.expunge_all()
    await _assert_unchanged_and_writable(empty_chain, chain, three_events)


@pytest.mark.parametrize("table", ["audit_events", "audit_chain_links"])
async def test_truncate_is_refused_on_postgres(
    empty_chain: AsyncSession,
    chain: ChainSettings,
    three_events: list[AuditEvent],
    is_postgres: bool,
    table: str,
) -> None:
    if not is_postgres:
        pytest.skip("SQLite has no TRUNCATE")
    with pytest.raises(DBAPIError, match="TRUNCATE refused"):
        async with empty_chain.begin_nested():
            await empty_chain.execute(text(f"TRUNCATE {table}"))
    await _assert_unchanged_and_writable(empty_chain, chain, three_events)


async def test_triggers_are_installed(db_session: AsyncSession, is_postgres: bool) -> None:
    """The refusal comes from the schema the migration built, not from the application."""
    if is_postgres:
        rows = (
            await db_session.execute(
                text(
                    "SELECT tgrelid::regclass::text, tgname, tgenabled::text FROM pg_trigger "
                    "WHERE tgrelid IN ('audit_events'::regclass, 'audit_chain_links'::regclass) "
                    "AND NOT tgisinternal ORDER BY 1, 2"
                )
            )
        ).all()
        # 'O': fires in origin and local mode, i.e. always for ordinary sessions.
        assert [tuple(row) for row in rows] == [
            ("audit_chain_links", "audit_chain_links_no_truncate", "O"),
            ("audit_chain_links", "audit_chain_links_no_update_delete", "O"),
            ("audit_events", "audit_events_assign_sequence", "O"),
            ("audit_events", "audit_events_no_truncate", "O"),
            ("audit_events", "audit_events_no_update_delete", "O"),
        ]
    else:
        names = (
            await db_session.scalars(
                text(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger' "
                    "AND tbl_name IN ('audit_events', 'audit_chain_links') ORDER BY name"
                )
            )
        ).all()
        assert list(names) == [
            "audit_chain_links_no_delete",
            "audit_chain_links_no_update",
            "audit_events_no_delete",
            "audit_events_no_update",
        ]
