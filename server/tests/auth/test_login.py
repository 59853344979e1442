"""Login (JSON and OAuth2 form), /me, logout, lockout and throttling."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.models.user import User, UserRole
from app.services.demo.seed import DEMO_ADMIN_EMAIL
from app.services.demo.seed import DEMO_PASSWORD as DEMO_ADMIN_PASSWORD
from tests.auth.conftest import Account, Accounts, AuditCounter, assert_error
from tests.factories import bearer


async def test_login_json_response_shape(client: httpx.AsyncClient, accounts: Accounts) -> None:
    account = await accounts.create(UserRole.COORDINATOR)
    response = await client.post(
        "/api/auth/login", json={"email": account.email, "password": account.password}
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"user", "tokens", "access_token", "token_type", "must_change_password"}
    assert body["user"] == {
        "id": str(account.id),
        "email": account.email,
        "name": "Test coordinator",
        "role": "coordinator",
        "status": "active",
    }
    assert set(body["tokens"]) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["tokens"]["token_type"] == "bearer"
    assert body["tokens"]["expires_in"] == 30 * 60
    assert body["access_token"] == body["tokens"]["access_token"]
    assert body["token_type"] == "bearer"
    assert body["must_change_password"] is False
    assert "password_hash" not in response.text


async def test_login_email_is_case_insensitive(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    account = await accounts.create()
    response = await client.post(
        "/api/auth/login", json={"email": account.email.upper(), "password": account.password}
    )
    assert response.status_code == 200


async def test_login_oauth2_form(client: httpx.AsyncClient, accounts: Accounts) -> None:
    account = await accounts.create(UserRole.READ_ONLY)
    response = await client.post(
        "/api/auth/login", data={"username": account.email, "password": account.password}
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    me = await client.get("/api/auth/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.json()["email"] == account.email
    assert me.json()["role"] == "read_only"


async def test_demo_admin_swagger_flow(
    client: httpx.AsyncClient, db_session: AsyncSession, accounts: Accounts
) -> None:
    await accounts.create(UserRole.ADMIN, email=DEMO_ADMIN_EMAIL, password=DEMO_ADMIN_PASSWORD)
    response = await client.post(
        "/api/auth/login",
        data={"username": DEMO_ADMIN_EMAIL, "password": DEMO_ADMIN_PASSWORD},
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    users = await client.get("/api/users", headers=bearer(body["access_token"]))
    assert users.status_code == 200
    assert DEMO_ADMIN_EMAIL in [user["email"] for user in users.json()["data"]]


async def test_login_invalid_bodies_are_422(client: httpx.AsyncClient) -> None:
    for payload in ({}, {"email": 42, "password": "x"}, {"email": "a@b.org"}):
        assert_error(await client.post("/api/auth/login", json=payload), 422, "VALIDATION_ERROR")
    assert_error(
        await client.post(
            "/api/auth/login", content=b"{not json", headers={"Content-Type": "application/json"}
        ),
        422,
        "VALIDATION_ERROR",
    )
    assert_error(await client.post("/api/auth/login", data={"username": "a@b.org"}), 422)


async def test_me(client: httpx.AsyncClient, accounts: Accounts) -> None:
    account = await accounts.signed_in(UserRole.RESEARCHER)
    response = await client.get("/api/auth/me", headers=account.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(account.id)
    assert body["totp_enabled"] is False
    assert body["must_change_password"] is False
    assert body["last_login_at"] is not None
    assert_error(await client.get("/api/auth/me"), 401, "UNAUTHORIZED")


async def test_logout_ends_access_and_refresh_at_once(
    client: httpx.AsyncClient, accounts: Accounts, audit: AuditCounter
) -> None:
    account = await accounts.signed_in()
    other = await accounts.login(await accounts.create())
    response = await client.post("/api/auth/logout", headers=account.headers)
    assert response.status_code == 204
    assert_error(await client.get("/api/auth/me", headers=account.headers), 401)
    assert_error(
        await client.post("/api/auth/refresh", json={"refresh_token": account.refresh_token}), 401
    )
    assert_error(await client.post("/api/auth/logout", headers=account.headers), 401)
    # Someone else's login is untouched.
    assert (await client.get("/api/auth/me", headers=other.headers)).status_code == 200
    event = await audit.one("user.logout")
    assert event.actor_id == str(account.id)


async def test_unknown_email_and_wrong_password_are_indistinguishable(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    account = await accounts.create()
    wrong = await client.post(
        "/api/auth/login", json={"email": account.email, "password": "Wrong-Password-123456"}
    )
    unknown = await client.post(
        "/api/auth/login", json={"email": "nobody@example.org", "password": "Wrong-Password-123456"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"]["code"] == "UNAUTHORIZED"
    assert wrong.headers.get("www-authenticate") == unknown.headers.get("www-authenticate")


async def test_lockout_after_five_failures_and_its_expiry(
    client: httpx.AsyncClient, db_session: AsyncSession, accounts: Accounts
) -> None:
    account = await accounts.create()
    bad = {"email": account.email, "password": "Wrong-Password-123456"}
    for _ in range(4):
        assert_error(await client.post("/api/auth/login", json=bad), 401)
    locked = await client.post("/api/auth/login", json=bad)
    body = assert_error(locked, 423, "ACCOUNT_LOCKED")
    retry_after = int(locked.headers["Retry-After"])
    assert 0 < retry_after <= 15 * 60
    assert body["error"]["details"]["retry_after_seconds"] == retry_after
    # The right password does not get through while locked.
    good = {"email": account.email, "password": account.password}
    assert_error(await client.post("/api/auth/login", json=good), 423, "ACCOUNT_LOCKED")

    user = await db_session.get(User, account.id)
    assert user is not None
    await db_session.refresh(user)
    assert user.locked_until is not None
    user.locked_until = utcnow() - timedelta(seconds=1)
    await db_session.commit()
    assert (await client.post("/api/auth/login", json=good)).status_code == 200


async def test_unknown_email_is_locked_too(client: httpx.AsyncClient) -> None:
    bad = {"email": "ghost@example.org", "password": "Wrong-Password-123456"}
    for _ in range(4):
        assert_error(await client.post("/api/auth/login", json=bad), 401)
    locked = await client.post("/api/auth/login", json=bad)
    assert_error(locked, 423, "ACCOUNT_LOCKED")
    assert int(locked.headers["Retry-After"]) > 0
    assert_error(await client.post("/api/auth/login", json=bad), 423, "ACCOUNT_LOCKED")


async def test_ip_throttle_after_twenty_failures(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    account = await accounts.create()
    for index in range(20):
        response = await client.post(
            "/api/auth/login",
            json={"email": f"ghost{index}@example.org", "password": "Wrong-Password-123456"},
        )
        assert response.status_code == 401
    throttled = await client.post(
        "/api/auth/login", json={"email": account.email, "password": account.password}
    )
    assert_error(throttled, 429, "RATE_LIMITED")
    assert int(throttled.headers["Retry-After"]) > 0


async def test_disabled_user_cannot_log_in(
    client: httpx.AsyncClient, accounts: Accounts, admin: Account
) -> None:
    account = await accounts.create()
    response = await client.patch(
        f"/api/users/{account.id}", json={"status": "disabled"}, headers=admin.headers
    )
    assert response.status_code == 200
    refused = await client.post(
        "/api/auth/login", json={"email": account.email, "password": account.password}
    )
    assert_error(refused, 401, "UNAUTHORIZED")
