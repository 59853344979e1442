"""Concurrent PATCHes of one battery each get their own version, none fails.

This test cannot use `db_session` (on SQLite it holds the write lock for the whole test): it opens
sessions of its own that commit for real, and deletes its study and user afterwards. Audit events
refuse DELETE, so its battery events stay until the test database is rebuilt; the other battery
tests therefore count events per study or per battery, never globally.
"""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.session import create_sessionmaker, transaction_scope
from app.models.audit import ActorType, AuditEvent
from app.models.battery import BatteryVersion
from app.models.study import Study
from app.models.user import User, UserRole
from app.services import batteries as service
from app.services.audit import AuditContext
from app.services.principals import StaffPrincipal

WRITERS = 6


async def test_concurrent_patches_are_serialised(migrated_engine: AsyncEngine) -> None:
    sessions = create_sessionmaker(migrated_engine)
    user_id, study_id = uuid.uuid4(), uuid.uuid4()
    async with sessions() as setup, transaction_scope(setup):
        setup.add(
            User(
                id=user_id,
                email=f"concurrency-{user_id.hex}@example.org",
                name="Concurrency",
                role=UserRole.ADMIN,
                password_hash="not-a-hash",  # never signs in
            )
        )
        setup.add(
            Study(
                id=study_id,
                code=f"CC-{user_id.hex[:8].upper()}",
                name="Concurrency",
                supported_languages=["en"],
                config={},
            )
        )
    principal = StaffPrincipal(
        user_id=user_id,
        session_id=uuid.uuid4(),
        email="concurrency@example.org",
        name="Concurrency",
        role=UserRole.ADMIN,
        must_change_password=False,
    )
    context = AuditContext(actor_type=ActorType.USER, actor_id=str(user_id))
    try:
        async with sessions() as session, transaction_scope(session):
            battery, _ = await service.create_battery(
                session,
                context,
                principal,
                study_id,
                service.BatteryFields(name="V1", tasks=[service.TaskSpec("simple-rt")]),
            )
            battery_id = battery.id

        async def rename(name: str) -> int:
            async with sessions() as session, transaction_scope(session):
                _, version = await service.update_battery(
                    session,
                    context,
                    principal,
                    battery_id,
                    service.BatteryFields(name=name, provided={"name"}),
                )
                return version.version

        names = [f"Writer {index}" for index in range(WRITERS)]
        versions = await asyncio.gather(*(rename(name) for name in names))
        assert sorted(versions) == list(range(2, WRITERS + 2))

        async with sessions() as check:
            rows = (
                await check.scalars(
                    select(BatteryVersion)
                    .where(BatteryVersion.battery_id == battery_id)
                    .order_by(BatteryVersion.version)
                )
            ).all()
            assert [row.version for row in rows] == list(range(1, WRITERS + 2))
            assert sorted(row.name for row in rows[1:]) == sorted(names)
            events = (
                await check.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.entity_id == str(battery_id))
                    .order_by(AuditEvent.sequence)
                )
            ).all()
            # Each update's "before" is the version the previous writer committed.
            updates = [event for event in events if event.action == "battery.update"]
            assert len(updates) == WRITERS
            for event in updates:
                assert event.before is not None and event.after is not None
                assert event.after["version"] == event.before["version"] + 1
    finally:
        async with sessions() as cleanup, transaction_scope(cleanup):
            await cleanup.execute(delete(Study).where(Study.id == study_id))
            await cleanup.execute(delete(User).where(User.id == user_id))
