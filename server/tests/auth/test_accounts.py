"""Change password, registration by administrators, and user updates."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.user import UserRole
from tests.auth.conftest import (
    NEW_PASSWORD,
    Account,
    Accounts,
    AuditCounter,
    assert_error,
)
from tests.factories import bearer


async def test_change_password_revokes_other_sessions(
    client: httpx.AsyncClient, accounts: Accounts, audit: AuditCounter
) -> None:
    account = await accounts.signed_in()
    other_device = await accounts.login(
        type(account)(id=account.id, email=account.email, password=account.password)
    )
    response = await client.post(
        "/api/auth/change-password",
        json={"current_password": account.password, "new_password": NEW_PASSWORD},
        headers=account.headers,
    )
    assert response.status_code == 204, response.text
    assert (await client.get("/api/auth/me", headers=account.headers)).status_code == 200
    assert_error(await client.get("/api/auth/me", headers=other_device.headers), 401)
    old = await client.post(
        "/api/auth/login", json={"email": account.email, "password": account.password}
    )
    assert_error(old, 401)
    new = await client.post(
        "/api/auth/login", json={"email": account.email, "password": NEW_PASSWORD}
    )
    assert new.status_code == 200
    event = await audit.one("user.password_changed", account.id)
    assert event.after == {"other_sessions_revoked": 1}
    assert "password" not in str(event.before) and NEW_PASSWORD not in str(event.after)


@pytest.mark.parametrize("weak", ["short", "password1234", "aaaaaaaaaaaaaaaa"])
async def test_change_password_policy_violations_are_422(
    client: httpx.AsyncClient, researcher: Account, weak: str
) -> None:
    response = await client.post(
        "/api/auth/change-password",
        json={"current_password": researcher.password, "new_password": weak},
        headers=researcher.headers,
    )
    body = assert_error(response, 422, "VALIDATION_ERROR")
    errors = body["error"]["details"]["errors"]
    assert errors and all(error["field"] == "new_password" for error in errors)
    assert weak not in response.text


async def test_change_password_same_as_current_is_422(
    client: httpx.AsyncClient, researcher: Account
) -> None:
    response = await client.post(
        "/api/auth/change-password",
        json={"current_password": researcher.password, "new_password": researcher.password},
        headers=researcher.headers,
    )
    body = assert_error(response, 422, "VALIDATION_ERROR")
    assert body["error"]["details"]["errors"] == [
        {"field": "new_password", "message": "Password must differ from the current password"}
    ]


PERSONAL_EMAIL = "ada.lovelace@analytical-engine.example.org"
PERSONAL_NAME = "Augusta Ada King"


@pytest.mark.parametrize(
    ("new_password", "reason"),
    [
        ("Metricis-Orbit-Giraffe-7", "must not contain the product's name"),
        ("M3tr1c1s-Orbit-Giraffe-7", "must not contain the product's name"),
        ("Lovelace-Orbit-Giraffe-7", "must not be or contain the email address or a word of it"),
        ("Orbit-Giraffe-AUGUSTA-7", "must not contain the user's name"),
    ],
)
async def test_change_password_refuses_product_and_personal_words(
    client: httpx.AsyncClient, accounts: Accounts, new_password: str, reason: str
) -> None:
    account = await accounts.login(await accounts.create(email=PERSONAL_EMAIL, name=PERSONAL_NAME))
    response = await client.post(
        "/api/auth/change-password",
        json={"current_password": account.password, "new_password": new_password},
        headers=account.headers,
    )
    body = assert_error(response, 422, "VALIDATION_ERROR")
    assert body["error"]["details"]["errors"] == [
        {"field": "new_password", "message": f"Password {reason}"}
    ]
    assert new_password not in response.text
    # The same account may still choose a password of its own.
    accepted = await client.post(
        "/api/auth/change-password",
        json={"current_password": account.password, "new_password": NEW_PASSWORD},
        headers=account.headers,
    )
    assert accepted.status_code == 204, accepted.text


async def test_change_password_wrong_current_is_403(
    client: httpx.AsyncClient, researcher: Account, audit: AuditCounter
) -> None:
    response = await client.post(
        "/api/auth/change-password",
        json={"current_password": "Not-My-Password-999", "new_password": NEW_PASSWORD},
        headers=researcher.headers,
    )
    assert_error(response, 403, "FORBIDDEN")
    assert await audit.events("user.password_changed") == []
    assert_error(await client.post("/api/auth/change-password", json={}), 401)


async def test_must_change_password_flow(client: httpx.AsyncClient, accounts: Accounts) -> None:
    account = await accounts.create(UserRole.RESEARCHER, must_change_password=True)
    await accounts.login(account)
    assert account.login_body["must_change_password"] is True
    assert (await client.get("/api/auth/me", headers=account.headers)).status_code == 200
    for method, path in (
        ("GET", "/api/user-sessions"),
        ("POST", "/api/auth/2fa/setup"),
        ("POST", "/api/user-sessions/revoke-others"),
    ):
        response = await client.request(method, path, headers=account.headers)
        body = assert_error(response, 403, "FORBIDDEN")
        assert body["error"]["details"]["reason"] == "PASSWORD_CHANGE_REQUIRED"
    changed = await client.post(
        "/api/auth/change-password",
        json={"current_password": account.password, "new_password": NEW_PASSWORD},
        headers=account.headers,
    )
    assert changed.status_code == 204
    # The same token now works everywhere its role allows.
    assert (await client.get("/api/user-sessions", headers=account.headers)).status_code == 200
    me = await client.get("/api/auth/me", headers=account.headers)
    assert me.json()["must_change_password"] is False


async def test_must_change_password_user_can_log_out(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    account = await accounts.signed_in(must_change_password=True)
    assert (await client.post("/api/auth/logout", headers=account.headers)).status_code == 204
    assert_error(await client.get("/api/auth/me", headers=account.headers), 401)


async def test_register_with_generated_password(
    client: httpx.AsyncClient, admin: Account, audit: AuditCounter
) -> None:
    response = await client.post(
        "/api/auth/register",
        json={"email": "New.Person@Example.org", "name": "New Person", "role": "coordinator"},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    temporary = body["temporary_password"]
    assert isinstance(temporary, str) and len(temporary) >= 12
    user = body["user"]
    assert user["email"] == "new.person@example.org"
    assert user["role"] == "coordinator"
    assert user["must_change_password"] is True
    assert "password_hash" not in response.text

    login = await client.post(
        "/api/auth/login", json={"email": "new.person@example.org", "password": temporary}
    )
    assert login.status_code == 200
    assert login.json()["must_change_password"] is True
    token = login.json()["access_token"]
    assert_error(await client.get("/api/user-sessions", headers=bearer(token)), 403)
    changed = await client.post(
        "/api/auth/change-password",
        json={"current_password": temporary, "new_password": NEW_PASSWORD},
        headers=bearer(token),
    )
    assert changed.status_code == 204
    # The temporary password worked once: it is gone now.
    again = await client.post(
        "/api/auth/login", json={"email": "new.person@example.org", "password": temporary}
    )
    assert_error(again, 401)
    event = await audit.one("user.create", user["id"])
    assert event.actor_id == str(admin.id)
    assert temporary not in str(event.after)


async def test_register_with_given_password_checks_policy(
    client: httpx.AsyncClient, admin: Account
) -> None:
    weak = await client.post(
        "/api/auth/register",
        json={"email": "weak@example.org", "name": "Weak", "role": "read_only", "password": "abc"},
        headers=admin.headers,
    )
    assert_error(weak, 422, "VALIDATION_ERROR")
    personal = await client.post(
        "/api/auth/register",
        json={
            "email": "grace.hopper@example.org",
            "name": "Grace Hopper",
            "role": "read_only",
            "password": "Hopper-Orbit-Giraffe-7",
        },
        headers=admin.headers,
    )
    body = assert_error(personal, 422, "VALIDATION_ERROR")
    assert {error["message"] for error in body["error"]["details"]["errors"]} == {
        "Password must not be or contain the email address or a word of it",
        "Password must not contain the user's name",
    }
    ok = await client.post(
        "/api/auth/register",
        json={
            "email": "given@example.org",
            "name": "Given",
            "role": "read_only",
            "password": NEW_PASSWORD,
        },
        headers=admin.headers,
    )
    assert ok.status_code == 201
    assert ok.json()["temporary_password"] is None


async def test_register_duplicate_email_is_409_case_insensitive(
    client: httpx.AsyncClient, admin: Account, accounts: Accounts
) -> None:
    existing = await accounts.create()
    response = await client.post(
        "/api/auth/register",
        json={"email": existing.email.upper(), "name": "Dup", "role": "researcher"},
        headers=admin.headers,
    )
    assert_error(response, 409, "CONFLICT")


@pytest.mark.parametrize("role", [UserRole.RESEARCHER, UserRole.COORDINATOR, UserRole.READ_ONLY])
async def test_register_is_admin_only(
    client: httpx.AsyncClient, accounts: Accounts, role: UserRole
) -> None:
    account = await accounts.signed_in(role)
    response = await client.post(
        "/api/auth/register",
        json={"email": "x@example.org", "name": "X", "role": "admin"},
        headers=account.headers,
    )
    assert_error(response, 403, "FORBIDDEN")
    anonymous = await client.post(
        "/api/auth/register", json={"email": "x@example.org", "name": "X", "role": "admin"}
    )
    assert_error(anonymous, 401)


async def test_disable_user_ends_tokens_and_login(
    client: httpx.AsyncClient, admin: Account, researcher: Account, audit: AuditCounter
) -> None:
    response = await client.patch(
        f"/api/users/{researcher.id}",
        json={"status": "disabled", "reason": "left the study"},
        headers=admin.headers,
    )
    assert response.status_code == 200
    assert_error(await client.get("/api/auth/me", headers=researcher.headers), 401)
    assert_error(
        await client.post(
            "/api/auth/login", json={"email": researcher.email, "password": researcher.password}
        ),
        401,
    )
    event = await audit.one("user.disabled", researcher.id)
    assert event.reason == "left the study"
    assert event.before is not None and event.before["status"] == "active"
    assert event.after is not None and event.after["status"] == "disabled"
    # Re-enabled, the user can sign in again.
    enabled = await client.patch(
        f"/api/users/{researcher.id}", json={"status": "active"}, headers=admin.headers
    )
    assert enabled.status_code == 200
    await accounts_login_ok(client, researcher)


async def accounts_login_ok(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.post(
        "/api/auth/login", json={"email": account.email, "password": account.password}
    )
    assert response.status_code == 200


async def test_role_change_applies_on_next_request(
    client: httpx.AsyncClient, admin: Account, researcher: Account, audit: AuditCounter
) -> None:
    assert_error(await client.get("/api/users", headers=researcher.headers), 403)
    promoted = await client.patch(
        f"/api/users/{researcher.id}", json={"role": "admin"}, headers=admin.headers
    )
    assert promoted.status_code == 200
    assert promoted.json()["role"] == "admin"
    assert (await client.get("/api/users", headers=researcher.headers)).status_code == 200
    demoted = await client.patch(
        f"/api/users/{researcher.id}", json={"role": "read_only"}, headers=admin.headers
    )
    assert demoted.status_code == 200
    assert_error(await client.get("/api/users", headers=researcher.headers), 403)
    me = await client.get("/api/auth/me", headers=researcher.headers)
    assert me.json()["role"] == "read_only"
    assert len(await audit.events("user.role_changed", researcher.id)) == 2


async def test_admin_cannot_disable_or_demote_self(
    client: httpx.AsyncClient, admin: Account
) -> None:
    for body in ({"status": "disabled"}, {"role": "researcher"}):
        response = await client.patch(f"/api/users/{admin.id}", json=body, headers=admin.headers)
        assert_error(response, 422)


async def test_users_list_and_get(
    client: httpx.AsyncClient, admin: Account, researcher: Account, db_session: AsyncSession
) -> None:
    listed = await client.get(
        "/api/users", params={"role": "researcher", "per_page": 100}, headers=admin.headers
    )
    assert listed.status_code == 200
    assert str(researcher.id) in [user["id"] for user in listed.json()["data"]]
    assert set(listed.json()["pagination"]) == {
        "page",
        "per_page",
        "total",
        "total_pages",
        "has_next",
        "has_prev",
    }
    one = await client.get(f"/api/users/{researcher.id}", headers=admin.headers)
    assert one.status_code == 200 and one.json()["email"] == researcher.email
    missing = await client.get(
        "/api/users/00000000-0000-0000-0000-000000000000", headers=admin.headers
    )
    assert_error(missing, 404, "NOT_FOUND")
