"""`visit.missed`: written by the status scan, in its transaction, once per visit whose window
closed without a session, and delivered like every other event."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.models.outbox import EventType, OutboxEvent
from app.services.audit import AuditContext
from app.services.schedules.transitions import advance_visit_statuses
from app.services.webhooks.dispatcher import dispatch_webhooks
from tests.schedules.conftest import World, by_key, create_schedule, enroll, visits_of
from tests.schedules.conftest import world as world  # the fixture, shared
from tests.webhooks.conftest import webhook_settings
from tests.webhooks.receiver import Receiver, running


@pytest.fixture
def settings(database_url: str, storage_dir: Path) -> Settings:
    return webhook_settings(database_url, storage_dir)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from running(Receiver())


async def test_a_visit_whose_window_closes_is_announced_once_and_delivered(
    client: httpx.AsyncClient,
    db_session: AsyncSession,
    settings: Settings,
    world: World,
    receiver: Receiver,
) -> None:
    created = await client.post(
        f"/api/studies/{world.study_id}/webhooks",
        headers=world.researcher,
        json={"url": receiver.url(), "events": ["visit.missed"]},
    )
    assert created.status_code == 201, created.text
    receiver.secrets.append(created.json()["secret"])
    await create_schedule(client, world)
    participant = await enroll(client, world, "MISS-01", email="miss@example.org")
    visits = by_key(await visits_of(client, world.coordinator, participant["id"]))

    # Thirty days on the baseline window (days 0-7) has closed: one visit missed.
    later = utcnow() + timedelta(days=30)
    await advance_visit_statuses(db_session, AuditContext.system(), later)
    await db_session.commit()
    again = await advance_visit_statuses(db_session, AuditContext.system(), later)
    await db_session.commit()
    assert again.missed == []

    [event] = (
        await db_session.scalars(
            select(OutboxEvent).where(
                OutboxEvent.study_id == world.study_id,
                OutboxEvent.type == EventType.VISIT_MISSED,
            )
        )
    ).all()
    baseline = visits["baseline#1"]
    assert event.participant_id == uuid.UUID(participant["id"])
    assert event.payload["visit_id"] == baseline["id"]
    assert event.payload["participant_code"] == "MISS-01"
    assert event.payload["event_key"] == "baseline" and event.payload["occurrence"] == 1
    for field in ("due_date", "window_start_date", "window_end_date", "timezone", "label"):
        assert event.payload[field] == baseline[field], field

    @asynccontextmanager
    async def in_test_transaction() -> AsyncIterator[AsyncSession]:
        yield db_session

    report = await dispatch_webhooks(in_test_transaction, settings, concurrency=1)
    assert report.delivered == 1
    [request] = receiver.posts()
    assert request.verified
    assert request.json()["event"] == "visit.missed"
    assert request.event_id == str(event.id)
    assert b"miss@example.org" not in request.body
