"""Fixtures for the staff-authentication HTTP tests: accounts, logins and audit counting."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import AuditEvent
from app.models.user import UserRole
from app.services.session_store import SessionStore
from tests import factories

NEW_PASSWORD = "Purple-Giraffe-Orbit-1987"


@dataclass
class Account:
    id: uuid.UUID
    email: str
    password: str
    access_token: str = ""
    refresh_token: str = ""
    login_body: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return factories.bearer(self.access_token)


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    if code is not None:
        assert body["error"]["code"] == code
    return body


class Accounts:
    """Creates users directly in the database and signs them in through the API."""

    def __init__(self, session: AsyncSession, client: httpx.AsyncClient) -> None:
        self.session = session
        self.client = client

    async def create(
        self,
        role: UserRole = UserRole.RESEARCHER,
        *,
        email: str | None = None,
        name: str | None = None,
        password: str = factories.PASSWORD,
        must_change_password: bool = False,
    ) -> Account:
        user = await factories.user(
            self.session,
            role,
            email=email,
            name=name,
            password=password,
            must_change_password=must_change_password,
        )
        return Account(id=user.id, email=user.email, password=password)

    async def login(self, account: Account, *, password: str | None = None) -> Account:
        body = await factories.login(self.client, account.email, password or account.password)
        account.access_token = body["access_token"]
        account.refresh_token = body["tokens"]["refresh_token"]
        account.login_body = body
        return account

    async def signed_in(
        self, role: UserRole = UserRole.RESEARCHER, *, must_change_password: bool = False
    ) -> Account:
        account = await self.create(role, must_change_password=must_change_password)
        return await self.login(account)


@pytest.fixture
def accounts(db_session: AsyncSession, client: httpx.AsyncClient) -> Accounts:
    return Accounts(db_session, client)


@pytest.fixture
async def admin(accounts: Accounts) -> Account:
    return await accounts.signed_in(UserRole.ADMIN)


@pytest.fixture
async def researcher(accounts: Accounts) -> Account:
    return await accounts.signed_in(UserRole.RESEARCHER)


@pytest.fixture
def store(app: FastAPI) -> SessionStore:
    session_store: SessionStore = app.state.session_store
    return session_store


class AuditCounter:
    """Counts audit events written after the test started (earlier ones may be committed)."""

    def __init__(self, session: AsyncSession, baseline: int) -> None:
        self.session = session
        self.baseline = baseline

    async def events(self, action: str, entity_id: object | None = None) -> list[AuditEvent]:
        statement = select(AuditEvent).where(
            AuditEvent.sequence > self.baseline, AuditEvent.action == action
        )
        if entity_id is not None:
            statement = statement.where(AuditEvent.entity_id == str(entity_id))
        return list((await self.session.scalars(statement.order_by(AuditEvent.sequence))).all())

    async def one(self, action: str, entity_id: object | None = None) -> AuditEvent:
        found = await self.events(action, entity_id)
        assert len(found) == 1, [event.action for event in found]
        assert found[0].category == "auth"
        return found[0]


@pytest.fixture
async def audit(db_session: AsyncSession) -> AuditCounter:
    baseline = await db_session.scalar(select(func.coalesce(func.max(AuditEvent.sequence), 0)))
    return AuditCounter(db_session, int(baseline or 0))
