"""TOTP two-factor authentication."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pyotp
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.models.user import User
from tests.auth.conftest import Account, Accounts, AuditCounter, assert_error


async def _setup(client: httpx.AsyncClient, account: Account) -> str:
    response = await client.post("/api/auth/2fa/setup", headers=account.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"secret", "otpauth_uri"}
    uri = urlparse(body["otpauth_uri"])
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    query = parse_qs(uri.query)
    assert query["secret"] == [body["secret"]]
    assert query["issuer"] == ["Metricis"]
    secret: str = body["secret"]
    return secret


async def _enable(client: httpx.AsyncClient, account: Account) -> str:
    secret = await _setup(client, account)
    response = await client.post(
        "/api/auth/2fa/enable", json={"code": pyotp.TOTP(secret).now()}, headers=account.headers
    )
    assert response.status_code == 204, response.text
    return secret


async def _mfa_challenge(client: httpx.AsyncClient, account: Account) -> str:
    response = await client.post(
        "/api/auth/login", json={"email": account.email, "password": account.password}
    )
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    assert set(body) == {"mfa_required", "mfa_token"}
    assert body["mfa_required"] is True
    token: str = body["mfa_token"]
    return token


def _other_code(secret: str) -> str:
    """A valid-looking code that is not current (nor in the adjacent windows)."""
    totp = pyotp.TOTP(secret)
    now = time.time()
    valid = {totp.at(now + delta) for delta in (-60, -30, 0, 30, 60)}
    for candidate in ("000000", "111111", "123456", "654321"):
        if candidate not in valid:
            return candidate
    raise AssertionError("unreachable")


async def test_enable_with_wrong_code_is_422(
    client: httpx.AsyncClient, researcher: Account
) -> None:
    secret = await _setup(client, researcher)
    response = await client.post(
        "/api/auth/2fa/enable", json={"code": _other_code(secret)}, headers=researcher.headers
    )
    assert_error(response, 422, "VALIDATION_ERROR")
    me = await client.get("/api/auth/me", headers=researcher.headers)
    assert me.json()["totp_enabled"] is False


async def test_full_totp_login(
    client: httpx.AsyncClient, researcher: Account, audit: AuditCounter
) -> None:
    secret = await _enable(client, researcher)
    assert (await client.get("/api/auth/me", headers=researcher.headers)).json()["totp_enabled"]
    mfa_token = await _mfa_challenge(client, researcher)
    # The mfa token is not an access token.
    assert_error(
        await client.get("/api/auth/me", headers={"Authorization": f"Bearer {mfa_token}"}), 401
    )
    code = pyotp.TOTP(secret).now()
    # The code used to enable cannot be replayed for the login within its window.
    replayed = await client.post(
        "/api/auth/2fa/verify", json={"mfa_token": mfa_token, "code": code}
    )
    assert_error(replayed, 401)
    # The challenge was consumed by the attempt above: a fresh one is needed.
    mfa_token = await _mfa_challenge(client, researcher)
    totp = pyotp.TOTP(secret)
    next_code = totp.at(time.time() + 30)
    verified = await client.post(
        "/api/auth/2fa/verify", json={"mfa_token": mfa_token, "code": next_code}
    )
    assert verified.status_code == 200, verified.text
    body = verified.json()
    assert body["user"]["id"] == str(researcher.id)
    assert (
        await client.get(
            "/api/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
    ).status_code == 200
    # The mfa token is single use.
    reused = await client.post(
        "/api/auth/2fa/verify", json={"mfa_token": mfa_token, "code": next_code}
    )
    assert_error(reused, 401)
    # The same code cannot be used twice, even with a fresh challenge.
    fresh = await _mfa_challenge(client, researcher)
    twice = await client.post("/api/auth/2fa/verify", json={"mfa_token": fresh, "code": next_code})
    assert_error(twice, 401)
    await audit.one("user.2fa_setup_started", researcher.id)
    await audit.one("user.2fa_enabled", researcher.id)
    logins = await audit.events("user.login")
    assert [event.after["method"] for event in logins if event.after] == ["password+totp"]


async def test_verify_with_wrong_code_or_bad_token(
    client: httpx.AsyncClient, researcher: Account, audit: AuditCounter
) -> None:
    secret = await _enable(client, researcher)
    mfa_token = await _mfa_challenge(client, researcher)
    wrong = await client.post(
        "/api/auth/2fa/verify", json={"mfa_token": mfa_token, "code": _other_code(secret)}
    )
    assert_error(wrong, 401)
    failed = await audit.one("user.login_failed", researcher.id)
    assert failed.after == {
        "email": researcher.email,
        "reason": "invalid_two_factor_code",
        "locked": False,
    }
    garbage = await client.post(
        "/api/auth/2fa/verify", json={"mfa_token": "x.y.z", "code": "123456"}
    )
    assert_error(garbage, 401)
    # An access token is not an mfa token.
    access = await client.post(
        "/api/auth/2fa/verify", json={"mfa_token": researcher.access_token, "code": "123456"}
    )
    assert_error(access, 401)


async def _wrong_code(client: httpx.AsyncClient, account: Account, secret: str) -> httpx.Response:
    mfa_token = await _mfa_challenge(client, account)
    return await client.post(
        "/api/auth/2fa/verify", json={"mfa_token": mfa_token, "code": _other_code(secret)}
    )


async def test_wrong_codes_lock_the_account_like_wrong_passwords(
    client: httpx.AsyncClient,
    db_session: AsyncSession,
    researcher: Account,
    audit: AuditCounter,
) -> None:
    secret = await _enable(client, researcher)
    # A challenge opened before the lock must not get through once the account is locked.
    early_challenge = await _mfa_challenge(client, researcher)
    for _ in range(4):
        assert_error(await _wrong_code(client, researcher, secret), 401)
    locked = await _wrong_code(client, researcher, secret)
    body = assert_error(locked, 423, "ACCOUNT_LOCKED")
    retry_after = int(locked.headers["Retry-After"])
    assert 0 < retry_after <= 15 * 60
    assert body["error"]["details"]["retry_after_seconds"] == retry_after

    good_code = pyotp.TOTP(secret).at(time.time() + 30)
    late = await client.post(
        "/api/auth/2fa/verify", json={"mfa_token": early_challenge, "code": good_code}
    )
    assert_error(late, 423, "ACCOUNT_LOCKED")
    signing_in = await client.post(
        "/api/auth/login", json={"email": researcher.email, "password": researcher.password}
    )
    assert_error(signing_in, 423, "ACCOUNT_LOCKED")

    failures = await audit.events("user.login_failed", researcher.id)
    assert [event.after for event in failures] == [
        {"email": researcher.email, "reason": "invalid_two_factor_code", "locked": index == 4}
        for index in range(5)
    ]

    # Once the lock has passed, the right code signs in and clears the count.
    user = await db_session.get(User, researcher.id)
    assert user is not None
    await db_session.refresh(user)
    user.locked_until = utcnow() - timedelta(seconds=1)
    await db_session.commit()
    mfa_token = await _mfa_challenge(client, researcher)
    verified = await client.post(
        "/api/auth/2fa/verify", json={"mfa_token": mfa_token, "code": good_code}
    )
    assert verified.status_code == 200, verified.text
    await db_session.refresh(user)
    assert user.failed_login_count == 0 and user.locked_until is None


async def test_wrong_passwords_and_wrong_codes_share_one_count(
    client: httpx.AsyncClient, researcher: Account
) -> None:
    secret = await _enable(client, researcher)
    wrong_password = {"email": researcher.email, "password": "Wrong-Password-123456"}
    for _ in range(2):
        assert_error(await client.post("/api/auth/login", json=wrong_password), 401)
    # The right password alone does not clear the count while the second factor is missing.
    for _ in range(2):
        assert_error(await _wrong_code(client, researcher, secret), 401)
    assert_error(await _wrong_code(client, researcher, secret), 423, "ACCOUNT_LOCKED")


async def test_disable_requires_password(
    client: httpx.AsyncClient, researcher: Account, accounts: Accounts, audit: AuditCounter
) -> None:
    await _enable(client, researcher)
    wrong = await client.post(
        "/api/auth/2fa/disable", json={"password": "Not-The-Password-1"}, headers=researcher.headers
    )
    assert_error(wrong, 403, "FORBIDDEN")
    assert_error(
        await client.post("/api/auth/2fa/disable", json={}, headers=researcher.headers), 422
    )
    ok = await client.post(
        "/api/auth/2fa/disable", json={"password": researcher.password}, headers=researcher.headers
    )
    assert ok.status_code == 204
    await audit.one("user.2fa_disabled", researcher.id)
    # Password alone signs in again.
    await accounts.login(researcher)
    assert "tokens" in researcher.login_body


async def test_setup_twice_when_enabled_is_422(
    client: httpx.AsyncClient, researcher: Account
) -> None:
    await _enable(client, researcher)
    assert_error(await client.post("/api/auth/2fa/setup", headers=researcher.headers), 422)


async def test_totp_routes_need_authentication(client: httpx.AsyncClient) -> None:
    for path, body in (
        ("/api/auth/2fa/setup", None),
        ("/api/auth/2fa/enable", {"code": "123456"}),
        ("/api/auth/2fa/disable", {"password": "x"}),
    ):
        assert_error(await client.post(path, json=body), 401)
