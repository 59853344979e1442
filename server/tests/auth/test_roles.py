"""Every route of auth, users, user-sessions and audit: anonymous 401, non-admins 403."""

from __future__ import annotations

import uuid

import httpx
import pytest

from app.models.user import UserRole
from tests.auth.conftest import Accounts, assert_error

SOME_ID = str(uuid.uuid4())

ADMIN_ROUTES: list[tuple[str, str, dict[str, object] | None]] = [
    ("POST", "/api/auth/register", {"email": "z@example.org", "name": "Z", "role": "admin"}),
    ("GET", "/api/users", None),
    ("GET", f"/api/users/{SOME_ID}", None),
    ("PATCH", f"/api/users/{SOME_ID}", {"role": "admin"}),
    ("GET", "/api/audit", None),
    ("GET", "/api/audit/verify", None),
]

AUTHENTICATED_ROUTES: list[tuple[str, str, dict[str, object] | None]] = [
    *ADMIN_ROUTES,
    ("GET", "/api/auth/me", None),
    ("POST", "/api/auth/logout", None),
    ("POST", "/api/auth/change-password", {"current_password": "a", "new_password": "b"}),
    ("POST", "/api/auth/accept-terms", None),
    ("POST", "/api/auth/2fa/setup", None),
    ("POST", "/api/auth/2fa/enable", {"code": "123456"}),
    ("POST", "/api/auth/2fa/disable", {"password": "x"}),
    ("GET", "/api/user-sessions", None),
    ("DELETE", f"/api/user-sessions/{SOME_ID}", None),
    ("POST", "/api/user-sessions/revoke-others", None),
]


@pytest.mark.parametrize(("method", "path", "body"), AUTHENTICATED_ROUTES)
async def test_anonymous_is_401(
    client: httpx.AsyncClient, method: str, path: str, body: dict[str, object] | None
) -> None:
    response = await client.request(method, path, json=body)
    assert_error(response, 401, "UNAUTHORIZED")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("role", [UserRole.READ_ONLY, UserRole.COORDINATOR, UserRole.RESEARCHER])
async def test_non_admin_roles_are_403_on_admin_routes(
    client: httpx.AsyncClient, accounts: Accounts, role: UserRole
) -> None:
    account = await accounts.signed_in(role)
    for method, path, body in ADMIN_ROUTES:
        response = await client.request(method, path, json=body, headers=account.headers)
        assert_error(response, 403, "FORBIDDEN")


async def test_admin_reaches_admin_routes(client: httpx.AsyncClient, accounts: Accounts) -> None:
    admin = await accounts.signed_in(UserRole.ADMIN)
    for method, path, body in ADMIN_ROUTES:
        response = await client.request(method, path, json=body, headers=admin.headers)
        assert response.status_code in (200, 201, 404), (path, response.text)


async def test_accept_terms(client: httpx.AsyncClient, accounts: Accounts) -> None:
    account = await accounts.signed_in(UserRole.READ_ONLY)
    response = await client.post("/api/auth/accept-terms", headers=account.headers)
    assert response.status_code == 200
    assert response.json()["terms_accepted_at"] is not None
