"""Access-token attacks, refresh rotation with reuse detection, and idle expiry."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta
from types import SimpleNamespace

import httpx
import jwt
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core import security
from app.core.clock import utcnow
from app.core.security import TokenType, create_token
from app.models.user import UserSession
from app.services.session_store import SessionStore
from tests.auth.conftest import Account, Accounts, AuditCounter, assert_error
from tests.factories import bearer


def _claims(account: Account, settings: Settings) -> dict[str, object]:
    claims = jwt.decode(
        account.access_token, settings.JWT_SECRET_KEY.get_secret_value(), algorithms=["HS256"]
    )
    assert set(claims) == {"sub", "typ", "sid", "jti", "iat", "exp"}
    return dict(claims)


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def _assert_refused(client: httpx.AsyncClient, token: str) -> None:
    assert_error(await client.get("/api/auth/me", headers=bearer(token)), 401, "UNAUTHORIZED")


async def test_access_token_claims(researcher: Account, settings: Settings) -> None:
    claims = _claims(researcher, settings)
    assert claims["typ"] == "access"
    assert claims["sub"] == str(researcher.id)
    assert isinstance(claims["exp"], int) and isinstance(claims["iat"], int)
    assert claims["exp"] - claims["iat"] == 30 * 60
    header = jwt.get_unverified_header(researcher.access_token)
    assert header["alg"] == "HS256"


async def test_alg_none_is_refused(
    client: httpx.AsyncClient, researcher: Account, settings: Settings
) -> None:
    claims = _claims(researcher, settings)
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    await _assert_refused(client, unsigned)
    unsigned_upper = f"{_b64({'alg': 'None', 'typ': 'JWT'})}.{_b64(claims)}."
    await _assert_refused(client, unsigned_upper)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("algorithm", ["HS512", "HS384"])
async def test_other_hmac_algorithm_with_same_secret_is_refused(
    client: httpx.AsyncClient, researcher: Account, settings: Settings, algorithm: str
) -> None:
    claims = _claims(researcher, settings)
    token = jwt.encode(claims, settings.JWT_SECRET_KEY.get_secret_value(), algorithm=algorithm)
    await _assert_refused(client, token)


async def test_bad_signature_is_refused(
    client: httpx.AsyncClient, researcher: Account, settings: Settings
) -> None:
    claims = _claims(researcher, settings)
    forged = jwt.encode(claims, "another-secret-of-sufficient-length-0123456789", "HS256")
    await _assert_refused(client, forged)
    header, payload, signature = researcher.access_token.split(".")
    tampered_claims = {**claims, "sub": str(uuid.uuid4())}
    await _assert_refused(client, f"{header}.{_b64(tampered_claims)}.{signature}")
    flipped = signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")
    await _assert_refused(client, f"{header}.{payload}.{flipped}")


async def test_expired_token_is_refused(
    client: httpx.AsyncClient, researcher: Account, settings: Settings
) -> None:
    claims = _claims(researcher, settings)
    expired = create_token(
        settings,
        subject=str(researcher.id),
        token_type=TokenType.ACCESS,
        lifetime=timedelta(seconds=-5),
        session_id=uuid.UUID(str(claims["sid"])),
    )
    await _assert_refused(client, expired.token)


async def test_a_token_accepted_before_is_refused_once_it_expires(
    client: httpx.AsyncClient,
    researcher: Account,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A verified token is remembered by the process; its expiry is still checked every time."""
    assert (
        await client.get("/api/auth/me", headers=bearer(researcher.access_token))
    ).status_code == 200
    expires = int(_claims(researcher, settings)["exp"])  # type: ignore[call-overload]
    monkeypatch.setattr(security, "time", SimpleNamespace(time=lambda: expires - 0.5))
    assert (
        await client.get("/api/auth/me", headers=bearer(researcher.access_token))
    ).status_code == 200
    monkeypatch.setattr(security, "time", SimpleNamespace(time=lambda: float(expires)))
    await _assert_refused(client, researcher.access_token)


async def test_refresh_and_mfa_tokens_are_not_access_tokens(
    client: httpx.AsyncClient, researcher: Account, settings: Settings
) -> None:
    await _assert_refused(client, researcher.refresh_token)
    claims = _claims(researcher, settings)
    mfa = create_token(
        settings,
        subject=str(researcher.id),
        token_type=TokenType.MFA,
        lifetime=timedelta(minutes=5),
        session_id=uuid.UUID(str(claims["sid"])),
    )
    await _assert_refused(client, mfa.token)
    # And an access token is not a refresh token.
    assert_error(
        await client.post("/api/auth/refresh", json={"refresh_token": researcher.access_token}),
        401,
    )


async def test_token_without_sid_or_with_unknown_sid_is_refused(
    client: httpx.AsyncClient, researcher: Account, settings: Settings
) -> None:
    no_sid = create_token(
        settings,
        subject=str(researcher.id),
        token_type=TokenType.ACCESS,
        lifetime=timedelta(minutes=5),
    )
    await _assert_refused(client, no_sid.token)
    unknown_sid = create_token(
        settings,
        subject=str(researcher.id),
        token_type=TokenType.ACCESS,
        lifetime=timedelta(minutes=5),
        session_id=uuid.uuid4(),
    )
    await _assert_refused(client, unknown_sid.token)


async def test_token_of_another_users_session_is_refused(
    client: httpx.AsyncClient, researcher: Account, accounts: Accounts, settings: Settings
) -> None:
    other = await accounts.signed_in()
    claims = _claims(researcher, settings)
    # A valid signature, but the sid belongs to somebody else.
    mixed = create_token(
        settings,
        subject=str(other.id),
        token_type=TokenType.ACCESS,
        lifetime=timedelta(minutes=5),
        session_id=uuid.UUID(str(claims["sid"])),
    )
    await _assert_refused(client, mixed.token)


async def test_revoked_session_token_is_refused(
    client: httpx.AsyncClient, researcher: Account, db_session: AsyncSession, store: SessionStore
) -> None:
    response = await client.get("/api/user-sessions", headers=researcher.headers)
    session_id = response.json()["data"][0]["id"]
    assert (
        await client.delete(f"/api/user-sessions/{session_id}", headers=researcher.headers)
    ).status_code == 204
    await _assert_refused(client, researcher.access_token)


async def test_disabled_users_tokens_are_refused_at_once(
    client: httpx.AsyncClient, researcher: Account, admin: Account
) -> None:
    assert (await client.get("/api/auth/me", headers=researcher.headers)).status_code == 200
    response = await client.patch(
        f"/api/users/{researcher.id}", json={"status": "disabled"}, headers=admin.headers
    )
    assert response.status_code == 200
    assert response.json()["status"] == "disabled"
    await _assert_refused(client, researcher.access_token)
    assert_error(
        await client.post("/api/auth/refresh", json={"refresh_token": researcher.refresh_token}),
        401,
    )


@pytest.mark.parametrize(
    "header",
    [
        "Bearer garbage",
        "Bearer ",
        "Bearer a.b.c",
        "Basic dXNlcjpwYXNz",
        "garbage",
        "Bearer " + "x" * 5000,
    ],
)
async def test_garbage_authorization_is_refused(client: httpx.AsyncClient, header: str) -> None:
    response = await client.get("/api/auth/me", headers={"Authorization": header})
    assert_error(response, 401, "UNAUTHORIZED")


async def test_missing_authorization_is_refused(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/auth/me"), 401, "UNAUTHORIZED")


async def test_refresh_rotates(client: httpx.AsyncClient, researcher: Account) -> None:
    response = await client.post(
        "/api/auth/refresh", json={"refresh_token": researcher.refresh_token}
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["refresh_token"] != researcher.refresh_token
    assert body["access_token"] != researcher.access_token
    assert (
        await client.get("/api/auth/me", headers=bearer(body["access_token"]))
    ).status_code == 200
    second = await client.post("/api/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert second.status_code == 200


async def test_refresh_grace_window_returns_same_pair(
    client: httpx.AsyncClient, researcher: Account
) -> None:
    first = await client.post("/api/auth/refresh", json={"refresh_token": researcher.refresh_token})
    retry = await client.post("/api/auth/refresh", json={"refresh_token": researcher.refresh_token})
    assert first.status_code == retry.status_code == 200
    assert retry.json() == first.json()
    # The family is still alive.
    new_access = first.json()["access_token"]
    assert (await client.get("/api/auth/me", headers=bearer(new_access))).status_code == 200


async def test_refresh_reuse_after_grace_revokes_family(
    client: httpx.AsyncClient,
    researcher: Account,
    db_session: AsyncSession,
    audit: AuditCounter,
) -> None:
    first = await client.post("/api/auth/refresh", json={"refresh_token": researcher.refresh_token})
    assert first.status_code == 200
    pair = first.json()
    await db_session.execute(
        update(UserSession)
        .where(UserSession.user_id == researcher.id)
        .values(rotated_at=utcnow() - timedelta(seconds=31))
    )
    await db_session.commit()
    replay = await client.post(
        "/api/auth/refresh", json={"refresh_token": researcher.refresh_token}
    )
    assert_error(replay, 401, "UNAUTHORIZED")
    # Every token of the family is dead: the new access token and the new refresh token.
    await _assert_refused(client, pair["access_token"])
    assert_error(
        await client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}), 401
    )
    event = await audit.one("user.refresh_reuse_revoked")
    assert event.actor_id == str(researcher.id)


async def test_refresh_reuse_of_older_token_revokes_family(
    client: httpx.AsyncClient, researcher: Account, audit: AuditCounter
) -> None:
    first = await client.post("/api/auth/refresh", json={"refresh_token": researcher.refresh_token})
    second = await client.post(
        "/api/auth/refresh", json={"refresh_token": first.json()["refresh_token"]}
    )
    assert second.status_code == 200
    # The very first token is two rotations old: never within the grace window.
    replay = await client.post(
        "/api/auth/refresh", json={"refresh_token": researcher.refresh_token}
    )
    assert_error(replay, 401)
    await _assert_refused(client, second.json()["access_token"])
    await audit.one("user.refresh_reuse_revoked")


async def test_refresh_garbage_is_401(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/api/auth/refresh", json={"refresh_token": "nope"}), 401)
    assert_error(await client.post("/api/auth/refresh", json={}), 422, "VALIDATION_ERROR")


async def test_idle_session_expires(
    client: httpx.AsyncClient,
    researcher: Account,
    db_session: AsyncSession,
    store: SessionStore,
    settings: Settings,
    audit: AuditCounter,
) -> None:
    claims = _claims(researcher, settings)
    sid = str(claims["sid"])
    await db_session.execute(
        update(UserSession)
        .where(UserSession.id == uuid.UUID(sid))
        .values(
            last_seen_at=utcnow() - timedelta(minutes=settings.SESSION_IDLE_TIMEOUT_MINUTES + 1)
        )
    )
    await db_session.commit()
    await store.delete(f"principal:{sid}")
    await _assert_refused(client, researcher.access_token)
    event = await audit.one("user.session_expired", sid)
    assert event.after == {"revoked_reason": "idle_timeout"}
    # It stays ended, and the refresh token is dead too.
    await _assert_refused(client, researcher.access_token)
    assert_error(
        await client.post("/api/auth/refresh", json={"refresh_token": researcher.refresh_token}),
        401,
    )
    assert len(await audit.events("user.session_expired")) == 1


async def test_idle_session_refresh_is_refused(
    client: httpx.AsyncClient,
    researcher: Account,
    db_session: AsyncSession,
    settings: Settings,
    audit: AuditCounter,
) -> None:
    await db_session.execute(
        update(UserSession)
        .where(UserSession.user_id == researcher.id)
        .values(
            last_seen_at=utcnow() - timedelta(minutes=settings.SESSION_IDLE_TIMEOUT_MINUTES + 1)
        )
    )
    await db_session.commit()
    assert_error(
        await client.post("/api/auth/refresh", json={"refresh_token": researcher.refresh_token}),
        401,
    )
    await audit.one("user.session_expired")


async def test_activity_keeps_session_alive(
    client: httpx.AsyncClient,
    researcher: Account,
    db_session: AsyncSession,
    store: SessionStore,
    settings: Settings,
) -> None:
    sid = str(_claims(researcher, settings)["sid"])
    await db_session.execute(
        update(UserSession)
        .where(UserSession.id == uuid.UUID(sid))
        .values(
            last_seen_at=utcnow() - timedelta(minutes=settings.SESSION_IDLE_TIMEOUT_MINUTES - 1)
        )
    )
    await db_session.commit()
    await store.delete(f"principal:{sid}")
    assert (await client.get("/api/auth/me", headers=researcher.headers)).status_code == 200
    session_row = await db_session.get(UserSession, uuid.UUID(sid))
    assert session_row is not None
    await db_session.refresh(session_row)
    assert utcnow() - session_row.last_seen_at < timedelta(minutes=1)
