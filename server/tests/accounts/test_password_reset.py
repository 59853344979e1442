"""Password reset by email end to end, with the email delivered to a real local SMTP server."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Message

from app.config import Settings
from app.core.clock import utcnow
from app.models.user import PasswordReset, UserRole, UserSession, UserStatus
from app.services.accounts.password_resets import (
    CONFIRM_IP_FAILURE_LIMIT,
    EMAIL_REQUEST_LIMIT,
    IP_REQUEST_LIMIT,
    hash_reset_token,
)
from tests import factories
from tests.accounts.conftest import assert_error, count_events, last_mail_to, link_token
from tests.magic_links.conftest import SmtpServer

REQUEST_URL = "/api/auth/password-reset"
CONFIRM_URL = "/api/auth/password-reset/confirm"
NEW_PASSWORD = "Purple-Giraffe-Orbit-1987"


def _mails_to(server: SmtpServer, address: str) -> int:
    return len([mail for mail in server.received if address in mail.recipients])


async def test_a_forgotten_password_is_reset_and_every_session_ends(
    client: httpx.AsyncClient,
    db_session: AsyncSession,
    smtp_server: SmtpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    user = await factories.user(db_session, UserRole.COORDINATOR, name="Ada Lovelace")
    email, user_id = user.email, user.id
    phone = factories.bearer((await factories.login(client, email))["access_token"])
    laptop = factories.bearer((await factories.login(client, email))["access_token"])
    assert (await client.get("/api/auth/me", headers=phone)).status_code == 200

    requested = await client.post(REQUEST_URL, json={"email": email.upper()})
    assert requested.status_code == 202
    assert requested.json() == {"status": "accepted"}
    mail = last_mail_to(smtp_server, email)
    token = link_token(mail, "reset-password")
    assert mail.message["Subject"] == "Reset your Metricis password"
    stored = (
        await db_session.scalars(select(PasswordReset).where(PasswordReset.user_id == user_id))
    ).all()
    assert len(stored) == 1 and token not in stored[0].token_hash  # stored hashed
    assert stored[0].expires_at - stored[0].created_at == timedelta(minutes=30)

    weak = await client.post(CONFIRM_URL, json={"token": token, "password": "ada-lovelace-1"})
    assert assert_error(weak, 422)["error"]["details"]["errors"][0]["field"] == "password"

    done = await client.post(CONFIRM_URL, json={"token": token, "password": NEW_PASSWORD})
    assert done.status_code == 204, done.text

    # Every login session ended: their tokens stop working at once.
    for headers in (phone, laptop):
        assert_error(await client.get("/api/auth/me", headers=headers), 401)
    ended = (
        await db_session.scalars(
            select(UserSession)
            .where(UserSession.user_id == user_id)
            .execution_options(populate_existing=True)
        )
    ).all()
    assert len(ended) == 2
    assert {s.revoked_reason for s in ended} == {"password_reset"}

    old = await client.post(
        "/api/auth/login", json={"email": email, "password": factories.PASSWORD}
    )
    assert_error(old, 401)
    await factories.login(client, email, NEW_PASSWORD)

    # Single use.
    again = await client.post(CONFIRM_URL, json={"token": token, "password": NEW_PASSWORD + "x"})
    assert_error(again, 401, "UNAUTHORIZED")

    account = str(user_id)
    assert await count_events(db_session, "user.password_reset_requested", entity_id=account) == 1
    assert await count_events(db_session, "user.password_reset", entity_id=account) == 1
    assert await count_events(db_session, "user.password_reset_failed", entity_id=account) == 1
    for login_session in ended:
        revoked = await count_events(
            db_session, "user.session_revoked", entity_id=str(login_session.id)
        )
        assert revoked == 1
    # Logs never hold the address or the token.
    assert email not in caplog.text.lower() and token not in caplog.text


async def test_unknown_and_disabled_addresses_get_the_same_answer_and_no_email(
    client: httpx.AsyncClient, db_session: AsyncSession, smtp_server: SmtpServer
) -> None:
    disabled = await factories.user(db_session, UserRole.COORDINATOR)
    disabled.status = UserStatus.DISABLED
    await db_session.commit()
    known = await factories.user(db_session, UserRole.COORDINATOR)

    answers = []
    for address in ("nobody-here@example.org", disabled.email, known.email, "not an address"):
        response = await client.post(REQUEST_URL, json={"email": address})
        answers.append((response.status_code, response.json()))
    assert answers == [(202, {"status": "accepted"})] * 4
    assert [m.recipients for m in smtp_server.received] == [[known.email]]


async def test_expired_links_are_refused_and_a_reset_kills_the_other_links(
    client: httpx.AsyncClient, db_session: AsyncSession, smtp_server: SmtpServer, settings: Settings
) -> None:
    user = await factories.user(db_session, UserRole.RESEARCHER)
    email, user_id = user.email, user.id
    tokens = []
    for _ in range(3):
        assert (await client.post(REQUEST_URL, json={"email": email})).status_code == 202
        tokens.append(link_token(last_mail_to(smtp_server, email), "reset-password"))
    first, second, third = tokens
    assert len(set(tokens)) == 3

    await db_session.execute(
        update(PasswordReset)
        .where(PasswordReset.token_hash == hash_reset_token(settings, first))
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    await db_session.commit()
    expired = await client.post(CONFIRM_URL, json={"token": first, "password": NEW_PASSWORD})
    assert_error(expired, 401)

    done = await client.post(CONFIRM_URL, json={"token": third, "password": NEW_PASSWORD})
    assert done.status_code == 204, done.text
    other = await client.post(CONFIRM_URL, json={"token": second, "password": NEW_PASSWORD})
    assert_error(other, 401)
    failed = await count_events(db_session, "user.password_reset_failed", entity_id=str(user_id))
    assert failed == 2


async def test_requests_are_throttled_per_address_and_per_client_address(
    client: httpx.AsyncClient, db_session: AsyncSession, smtp_server: SmtpServer
) -> None:
    user = await factories.user(db_session, UserRole.READ_ONLY)
    email = user.email
    for _ in range(EMAIL_REQUEST_LIMIT + 2):
        assert (await client.post(REQUEST_URL, json={"email": email})).status_code == 202
    assert _mails_to(smtp_server, email) == EMAIL_REQUEST_LIMIT

    other = await factories.user(db_session, UserRole.READ_ONLY)
    for _ in range(IP_REQUEST_LIMIT - EMAIL_REQUEST_LIMIT - 2):
        await client.post(REQUEST_URL, json={"email": f"x-{uuid.uuid4().hex[:6]}@example.org"})
    # Over the client address's budget: still 202, and nothing is sent.
    response = await client.post(REQUEST_URL, json={"email": other.email})
    assert response.status_code == 202
    assert _mails_to(smtp_server, other.email) == 0


async def test_failed_confirmations_are_throttled_per_client_address(
    client: httpx.AsyncClient,
) -> None:
    for _ in range(CONFIRM_IP_FAILURE_LIMIT):
        refused = await client.post(CONFIRM_URL, json={"token": "guess", "password": NEW_PASSWORD})
        assert_error(refused, 401)
    blocked = await client.post(CONFIRM_URL, json={"token": "guess", "password": NEW_PASSWORD})
    assert_error(blocked, 429, "RATE_LIMITED")
    assert blocked.headers["Retry-After"] == "900"


async def _answer(app: FastAPI, smtp_server: SmtpServer, email: str) -> tuple[int, int, float]:
    """Drive one reset request through the ASGI app: the status, the emails received when the
    answer was complete, and the seconds it took to answer."""
    body = json.dumps({"email": email}).encode()
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    statuses: list[int] = []
    when: list[tuple[int, float]] = []
    started = time.perf_counter()

    async def receive() -> Message:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])
        if message["type"] == "http.response.body" and not message.get("more_body"):
            when.append((len(smtp_server.received), time.perf_counter() - started))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": REQUEST_URL,
        "raw_path": REQUEST_URL.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    [(emails, seconds)] = when
    return statuses[0], emails, seconds


async def test_the_answer_is_sent_before_the_lookup_and_the_email(
    app: FastAPI, client: httpx.AsyncClient, db_session: AsyncSession, smtp_server: SmtpServer
) -> None:
    """Known or not, the answer leaves before any lookup: its timing says nothing."""
    user = await factories.user(db_session, UserRole.COORDINATOR)
    status, emails_when_answered, _ = await _answer(app, smtp_server, user.email)
    assert (status, emails_when_answered) == (202, 0)
    assert _mails_to(smtp_server, user.email) == 1
    status, emails_when_answered, _ = await _answer(app, smtp_server, "nobody@example.org")
    assert (status, emails_when_answered) == (202, 1)
