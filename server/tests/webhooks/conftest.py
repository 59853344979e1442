"""Webhook tests: settings that let webhooks reach the local receiver, a study team, and the
dispatcher run in the test's own transaction."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.models.outbox import DeliveryStatus, OutboxDelivery
from app.models.study import MemberRole
from app.models.user import UserRole
from app.services.outbox.dispatch import DispatchReport, SessionFactory
from app.services.webhooks.dispatcher import dispatch_webhooks
from tests import factories
from tests.conftest import make_settings
from tests.webhooks.receiver import Receiver, running

# The receiver listens on 127.0.0.1, which webhooks may reach only when allow-listed.
LOCAL_RECEIVER = ["127.0.0.1"]
RETRY_BASE_SECONDS = 30.0


def webhook_settings(database_url: str, storage_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "WEBHOOK_ALLOWED_HOSTS": LOCAL_RECEIVER,
        "WEBHOOK_TIMEOUT_SECONDS": 1.0,
        "OUTBOX_LEASE_SECONDS": 5.0,
        # Long enough that a retry never falls due within the run that scheduled it: the tests
        # decide when the next attempt is due (`make_due`).
        "OUTBOX_RETRY_BASE_SECONDS": RETRY_BASE_SECONDS,
        "OUTBOX_RETRY_MAX_SECONDS": 3600.0,
        "OUTBOX_MAX_ATTEMPTS": 3,
        **overrides,
    }
    return make_settings(database_url, storage_dir, **values)


@pytest.fixture
def settings(database_url: str, storage_dir: Path) -> Settings:
    return webhook_settings(database_url, storage_dir)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from running(Receiver())


@pytest.fixture
def sessions(db_session: AsyncSession) -> SessionFactory:
    """The dispatcher's transactions, as savepoints of the test's transaction."""

    @asynccontextmanager
    async def open_session() -> AsyncIterator[AsyncSession]:
        yield db_session

    return open_session


async def dispatch_now(sessions: SessionFactory, settings: Settings) -> DispatchReport:
    # One lane: every lane would share the test's single session.
    return await dispatch_webhooks(sessions, settings, concurrency=1)


async def make_due(db_session: AsyncSession) -> int:
    """Bring every scheduled retry forward to now, as time passing would."""
    rows = (
        await db_session.scalars(
            select(OutboxDelivery)
            .where(OutboxDelivery.status == DeliveryStatus.FAILED)
            .execution_options(populate_existing=True)
        )
    ).all()
    for row in rows:
        row.next_attempt_at = utcnow() - timedelta(seconds=1)
    await db_session.commit()
    return len(rows)


@dataclass(frozen=True, slots=True)
class Team:
    study_id: uuid.UUID
    admin: dict[str, str]
    researcher: dict[str, str]
    coordinator: dict[str, str]
    read_only: dict[str, str]
    outsider: dict[str, str]

    @property
    def webhooks(self) -> str:
        return f"/api/studies/{self.study_id}/webhooks"


@pytest.fixture
async def team(client: httpx.AsyncClient, db_session: AsyncSession) -> Team:
    study = await factories.study(db_session)
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    members = {
        role: await factories.study_member(db_session, client, study, role)
        for role in (MemberRole.RESEARCHER, MemberRole.COORDINATOR, MemberRole.READ_ONLY)
    }
    outsider = await factories.staff(db_session, client, UserRole.RESEARCHER)
    return Team(
        study_id=study.id,
        admin=admin.headers,
        researcher=members[MemberRole.RESEARCHER].headers,
        coordinator=members[MemberRole.COORDINATOR].headers,
        read_only=members[MemberRole.READ_ONLY].headers,
        outsider=outsider.headers,
    )


async def create_webhook(
    client: httpx.AsyncClient,
    team: Team,
    url: str,
    events: list[str],
    **fields: Any,
) -> dict[str, Any]:
    response = await client.post(
        team.webhooks, headers=team.researcher, json={"url": url, "events": events, **fields}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def enroll(client: httpx.AsyncClient, team: Team, code: str, **fields: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/participants",
        headers=team.researcher,
        json={"study_id": str(team.study_id), "participant_id": code, **fields},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def deliveries(
    client: httpx.AsyncClient, team: Team, webhook_id: str, **params: str
) -> list[dict[str, Any]]:
    response = await client.get(
        f"{team.webhooks}/{webhook_id}/deliveries", headers=team.researcher, params=params
    )
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def delivery(
    client: httpx.AsyncClient, team: Team, webhook_id: str, delivery_id: str
) -> dict[str, Any]:
    response = await client.get(
        f"{team.webhooks}/{webhook_id}/deliveries/{delivery_id}", headers=team.researcher
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
