"""Each auth action leaves exactly one `auth` event; the audit API filters and verifies."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pyotp
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.models.user import UserSession
from tests.auth.conftest import NEW_PASSWORD, Account, Accounts, AuditCounter, assert_error


async def test_login_success_and_failure_events(
    client: httpx.AsyncClient, accounts: Accounts, audit: AuditCounter
) -> None:
    account = await accounts.create()
    await client.post("/api/auth/login", json={"email": account.email, "password": "Wrong-1234567"})
    failed = await audit.one("user.login_failed", account.id)
    assert failed.after == {
        "email": account.email,
        "reason": "invalid_credentials",
        "locked": False,
    }
    await accounts.login(account)
    login = await audit.one("user.login")
    assert login.actor_id == str(account.id)
    assert login.ip
    await client.post("/api/auth/login", json={"email": "ghost@example.org", "password": "x" * 12})
    assert len(await audit.events("user.login_failed")) == 2
    assert len(await audit.events("user.login")) == 1


async def test_every_auth_action_leaves_one_event(
    client: httpx.AsyncClient,
    accounts: Accounts,
    admin: Account,
    audit: AuditCounter,
    db_session: AsyncSession,
) -> None:
    created = await client.post(
        "/api/auth/register",
        json={
            "email": "audited@example.org",
            "name": "Audited",
            "role": "researcher",
            "password": NEW_PASSWORD,
        },
        headers=admin.headers,
    )
    user_id = created.json()["user"]["id"]
    await audit.one("user.create", user_id)
    member = Account(id=uuid.UUID(user_id), email="audited@example.org", password=NEW_PASSWORD)
    await accounts.login(member)
    password = "Zebra-Lantern-Quartz-77"
    assert (
        await client.post(
            "/api/auth/change-password",
            json={"current_password": NEW_PASSWORD, "new_password": password},
            headers=member.headers,
        )
    ).status_code == 204
    member.password = password
    await audit.one("user.password_changed", user_id)

    setup = await client.post("/api/auth/2fa/setup", headers=member.headers)
    await audit.one("user.2fa_setup_started", user_id)
    code = pyotp.TOTP(setup.json()["secret"]).now()
    await client.post("/api/auth/2fa/enable", json={"code": code}, headers=member.headers)
    await audit.one("user.2fa_enabled", user_id)
    await client.post("/api/auth/2fa/disable", json={"password": password}, headers=member.headers)
    await audit.one("user.2fa_disabled", user_id)

    refreshed = await client.post("/api/auth/refresh", json={"refresh_token": member.refresh_token})
    assert refreshed.status_code == 200
    await db_session.execute(
        update(UserSession)
        .where(UserSession.user_id == member.id)
        .values(rotated_at=utcnow() - timedelta(minutes=5))
    )
    await db_session.commit()
    await client.post("/api/auth/refresh", json={"refresh_token": member.refresh_token})
    await audit.one("user.refresh_reuse_revoked")

    second = await accounts.login(member)
    assert (await client.post("/api/auth/logout", headers=second.headers)).status_code == 204
    await audit.one("user.logout")

    await client.patch(f"/api/users/{user_id}", json={"role": "coordinator"}, headers=admin.headers)
    await audit.one("user.role_changed", user_id)
    await client.patch(f"/api/users/{user_id}", json={"status": "disabled"}, headers=admin.headers)
    await audit.one("user.disabled", user_id)

    # The same through the API, as an administrator.
    for action in ("user.create", "user.password_changed", "user.disabled", "user.role_changed"):
        response = await client.get(
            "/api/audit",
            params={
                "action": action,
                "actor_id": str(admin.id)
                if action in ("user.create", "user.disabled", "user.role_changed")
                else user_id,
            },
            headers=admin.headers,
        )
        assert response.status_code == 200
        rows = [row for row in response.json()["data"] if row["entity_id"] == user_id]
        assert len(rows) == 1, action
        assert rows[0]["category"] == "auth"

    verify = await client.get("/api/audit/verify", headers=admin.headers)
    assert verify.status_code == 200
    body = verify.json()
    assert body["valid"] is True, body
    assert body["first_broken_sequence"] is None
    assert body["events_checked"] >= 10


async def test_audit_filters_and_pagination(
    client: httpx.AsyncClient, accounts: Accounts, admin: Account
) -> None:
    account = await accounts.create()
    for _ in range(3):
        await client.post(
            "/api/auth/login", json={"email": account.email, "password": "Wrong-1234567"}
        )
    start = (utcnow() - timedelta(minutes=1)).isoformat()
    end = (utcnow() + timedelta(minutes=1)).isoformat()
    response = await client.get(
        "/api/audit",
        params={
            "action": "user.login_failed",
            "category": "auth",
            "from": start,
            "to": end,
            "per_page": 2,
            "page": 1,
        },
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["data"]) == 2
    pagination = body["pagination"]
    assert pagination["page"] == 1 and pagination["per_page"] == 2
    assert pagination["total"] >= 3 and pagination["has_next"] is True
    assert pagination["has_prev"] is False
    assert all(row["action"] == "user.login_failed" for row in body["data"])
    page2 = await client.get(
        "/api/audit",
        params={"action": "user.login_failed", "from": start, "per_page": 2, "page": 2},
        headers=admin.headers,
    )
    assert page2.json()["pagination"]["has_prev"] is True
    assert {row["id"] for row in page2.json()["data"]}.isdisjoint(
        {row["id"] for row in body["data"]}
    )
    future = (utcnow() + timedelta(days=1)).isoformat()
    empty = await client.get(
        "/api/audit", params={"action": "user.login_failed", "from": future}, headers=admin.headers
    )
    assert empty.json()["data"] == [] and empty.json()["pagination"]["total"] == 0
    by_actor = await client.get(
        "/api/audit", params={"actor_id": str(admin.id), "category": "auth"}, headers=admin.headers
    )
    assert by_actor.status_code == 200
    assert all(row["actor_id"] == str(admin.id) for row in by_actor.json()["data"])
    assert by_actor.json()["pagination"]["total"] >= 1
    assert_error(
        await client.get("/api/audit", params={"category": "bogus"}, headers=admin.headers), 422
    )
    assert_error(
        await client.get("/api/audit", params={"per_page": 101}, headers=admin.headers), 422
    )
