"""`GET /api/auth/me` answers from the principal cache, and never shows an account as it was
before a committed change: not in the worker that made the change, not in another one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState

from app.config import SessionStorageBackend, Settings
from app.main import create_app
from tests.auth.conftest import Account
from tests.conftest import lifespan_client, make_settings


@pytest.fixture(params=["memory", "redis"])
def settings(request: pytest.FixtureRequest, database_url: str, storage_dir: Path) -> Settings:
    if request.param == "redis":
        return make_settings(
            database_url,
            storage_dir,
            SESSION_STORAGE_BACKEND=SessionStorageBackend.REDIS,
            REDIS_URL=request.getfixturevalue("redis_url"),
        )
    return make_settings(database_url, storage_dir)


@contextmanager
def counted_statements(db_session: AsyncSession) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(state: ORMExecuteState) -> None:
        statements.append(str(state.statement))

    event.listen(db_session.sync_session, "do_orm_execute", count)
    try:
        yield statements
    finally:
        event.remove(db_session.sync_session, "do_orm_execute", count)


async def _me(client: httpx.AsyncClient, account: Account) -> dict[str, object]:
    response = await client.get("/api/auth/me", headers=account.headers)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_a_repeated_me_reads_nothing_from_the_database(
    client: httpx.AsyncClient, researcher: Account, db_session: AsyncSession
) -> None:
    first = await _me(client, researcher)
    with counted_statements(db_session) as statements:
        again = await _me(client, researcher)
    assert statements == []
    assert again == first


async def test_an_administrators_change_shows_at_once(
    client: httpx.AsyncClient, researcher: Account, admin: Account
) -> None:
    before = await _me(client, researcher)
    renamed = await client.patch(
        f"/api/users/{researcher.id}", json={"name": "Renamed Person"}, headers=admin.headers
    )
    assert renamed.status_code == 200, renamed.text
    after = await _me(client, researcher)
    assert after["name"] == "Renamed Person" != before["name"]
    assert {key: value for key, value in after.items() if key != "name"} == {
        key: value for key, value in before.items() if key != "name"
    }


async def test_the_users_own_change_shows_at_once(
    client: httpx.AsyncClient, researcher: Account
) -> None:
    assert (await _me(client, researcher))["terms_accepted_at"] is None
    accepted = await client.post("/api/auth/accept-terms", headers=researcher.headers)
    assert accepted.status_code == 200, accepted.text
    assert (await _me(client, researcher))["terms_accepted_at"] is not None


async def test_a_change_made_in_another_worker_shows_at_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    researcher: Account,
    admin: Account,
    database_url: str,
    storage_dir: Path,
    redis_url: str,
) -> None:
    """Two applications on one Redis: the principal cached by one is not used by it once the
    other has committed a change to the account (only with Redis: a memory store belongs to one
    process, so the test's own application is not the one whose cache is checked)."""
    shared = make_settings(
        database_url,
        storage_dir,
        SESSION_STORAGE_BACKEND=SessionStorageBackend.REDIS,
        REDIS_URL=redis_url,
    )
    first_worker, other_worker = create_app(shared), create_app(shared)
    first_worker.dependency_overrides = other_worker.dependency_overrides = app.dependency_overrides
    async with lifespan_client(first_worker) as first, lifespan_client(other_worker) as other:
        assert (await _me(other, researcher))["name"] != "Changed Elsewhere"
        renamed = await first.patch(
            f"/api/users/{researcher.id}", json={"name": "Changed Elsewhere"}, headers=admin.headers
        )
        assert renamed.status_code == 200, renamed.text
        assert (await _me(other, researcher))["name"] == "Changed Elsewhere"
