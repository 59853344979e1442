"""Magic-link sign-in end to end, with the email delivered to a real local SMTP server."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Message

from app.config import Settings
from app.core.clock import utcnow
from app.models.audit import AuditEvent
from app.models.participant import MagicLinkToken, Participant, ParticipantStatus
from app.services.magic_links import (
    EMAIL_REQUEST_LIMIT,
    VERIFY_IP_FAILURE_LIMIT,
    hash_link_token,
)
from app.services.participant_auth import (
    authenticate_participant_claims,
    decode_participant_token,
)
from tests.magic_links.conftest import EMAIL_FROM, People, SmtpServer

REQUEST_URL = "/api/auth/magic-link"
VERIFY_URL = "/api/auth/magic-link/verify"
ACCEPTED = {"status": "accepted"}


async def _links(db_session: AsyncSession, participant_id: object) -> list[MagicLinkToken]:
    rows = await db_session.scalars(
        select(MagicLinkToken)
        .where(MagicLinkToken.participant_id == participant_id)
        .execution_options(populate_existing=True)
    )
    return list(rows.all())


async def _events(db_session: AsyncSession, action: str, participant_id: object) -> int:
    rows = await db_session.scalars(
        select(AuditEvent.id).where(
            AuditEvent.action == action, AuditEvent.participant_id == participant_id
        )
    )
    return len(rows.all())


async def test_link_is_emailed_and_signs_in_once(
    client: httpx.AsyncClient,
    people: People,
    smtp_server: SmtpServer,
    db_session: AsyncSession,
    settings: Settings,
) -> None:
    participant = await people.participant(email="Ada.Lovelace@Example.org")

    response = await client.post(REQUEST_URL, json={"email": "  ada.lovelace@example.ORG "})
    assert response.status_code == 202
    assert response.json() == ACCEPTED

    [mail] = smtp_server.received
    assert mail.recipients == ["Ada.Lovelace@Example.org"]  # the address on file
    assert mail.message["From"] == EMAIL_FROM
    assert mail.message["To"] == "Ada.Lovelace@Example.org"
    assert mail.message["Subject"] == "Your Metricis sign-in link"
    token = mail.token
    assert f"https://metricis.example.org/participant/sign-in?token={token}" in mail.text
    assert f"\n{token}\n" in mail.text  # the bare code too, for typing into the app
    assert "15 minutes" in mail.text

    [link] = await _links(db_session, participant.id)
    assert link.token_hash == hash_link_token(settings, token) and token not in link.token_hash
    assert link.used_at is None
    lifetime = link.expires_at - link.created_at
    assert lifetime == timedelta(minutes=settings.MAGIC_LINK_EXPIRE_MINUTES)
    assert await _events(db_session, "participant.magic_link_issued", participant.id) == 1

    response = await client.post(VERIFY_URL, json={"token": token})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.PARTICIPANT_TOKEN_EXPIRE_HOURS * 3600
    assert body["participant"] == {
        "id": str(participant.id),
        "participant_id": participant.code,
        "study_id": str(participant.study_id),
        "language": "fr",
    }
    claims = decode_participant_token(settings, body["access_token"])
    principal = await authenticate_participant_claims(db_session, claims)
    assert principal.participant_id == participant.id
    assert principal.study_id == participant.study_id
    assert await _events(db_session, "participant.magic_link_used", participant.id) == 1
    assert await _events(db_session, "participant.login", participant.id) == 1

    again = await client.post(VERIFY_URL, json={"token": token})
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "UNAUTHORIZED"
    [link] = await _links(db_session, participant.id)
    assert link.used_at is not None
    failed = await db_session.scalar(
        select(AuditEvent)
        .where(AuditEvent.action == "participant.login_failed")
        .order_by(AuditEvent.sequence.desc())
        .limit(1)
    )
    assert failed is not None and failed.after == {"method": "magic_link", "reason": "already_used"}


async def test_unknown_email_gets_the_same_answer_and_no_email(
    client: httpx.AsyncClient, people: People, smtp_server: SmtpServer
) -> None:
    await people.participant(email="known@example.org")
    known = await client.post(REQUEST_URL, json={"email": "known@example.org"})
    unknown = await client.post(REQUEST_URL, json={"email": "nobody@example.org"})
    not_an_address = await client.post(REQUEST_URL, json={"email": "not an address"})
    for response in (known, unknown, not_an_address):
        assert response.status_code == 202
        assert response.json() == ACCEPTED
    assert known.content == unknown.content == not_an_address.content
    assert known.headers["content-length"] == unknown.headers["content-length"]
    assert [mail.recipients for mail in smtp_server.received] == [["known@example.org"]]


async def test_expired_link_is_refused(
    client: httpx.AsyncClient, people: People, smtp_server: SmtpServer, db_session: AsyncSession
) -> None:
    participant = await people.participant(email="late@example.org")
    assert (await client.post(REQUEST_URL, json={"email": "late@example.org"})).status_code == 202
    [mail] = smtp_server.received
    await db_session.execute(
        update(MagicLinkToken)
        .where(MagicLinkToken.participant_id == participant.id)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    await db_session.commit()
    response = await client.post(VERIFY_URL, json={"token": mail.token})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    [link] = await _links(db_session, participant.id)
    assert link.used_at is None


async def test_unknown_token_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(VERIFY_URL, json={"token": "not-a-real-token"})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == (
        "The sign-in link is invalid, has expired or has already been used"
    )
    assert (await client.post(VERIFY_URL, json={"token": ""})).status_code == 422


async def test_withdrawn_participant_gets_no_link(
    client: httpx.AsyncClient, people: People, smtp_server: SmtpServer, db_session: AsyncSession
) -> None:
    withdrawn = await people.participant(
        email="gone@example.org", status=ParticipantStatus.WITHDRAWN
    )
    response = await client.post(REQUEST_URL, json={"email": "gone@example.org"})
    assert response.status_code == 202 and response.json() == ACCEPTED
    assert smtp_server.received == []
    assert await _links(db_session, withdrawn.id) == []


async def test_link_of_a_participant_withdrawn_since_is_refused(
    client: httpx.AsyncClient, people: People, smtp_server: SmtpServer, db_session: AsyncSession
) -> None:
    participant = await people.participant(email="soon-gone@example.org")
    await client.post(REQUEST_URL, json={"email": "soon-gone@example.org"})
    [mail] = smtp_server.received
    await db_session.execute(
        update(Participant)
        .where(Participant.id == participant.id)
        .values(status=ParticipantStatus.WITHDRAWN)
    )
    await db_session.commit()
    assert (await client.post(VERIFY_URL, json={"token": mail.token})).status_code == 401


async def test_each_participant_with_the_address_gets_a_link(
    client: httpx.AsyncClient, people: People, smtp_server: SmtpServer
) -> None:
    first = await people.participant(email="family@example.org")
    second = await people.participant(email="FAMILY@example.org")
    await client.post(REQUEST_URL, json={"email": "family@example.org"})
    assert len(smtp_server.received) == 2
    signed_in = set()
    for mail in smtp_server.received:
        response = await client.post(VERIFY_URL, json={"token": mail.token})
        assert response.status_code == 200
        signed_in.add(response.json()["participant"]["id"])
    assert signed_in == {str(first.id), str(second.id)}


async def test_requests_per_address_are_throttled(
    client: httpx.AsyncClient, people: People, smtp_server: SmtpServer
) -> None:
    await people.participant(email="eager@example.org")
    for _ in range(EMAIL_REQUEST_LIMIT + 2):
        response = await client.post(REQUEST_URL, json={"email": "Eager@example.org"})
        assert response.status_code == 202 and response.json() == ACCEPTED
    assert len(smtp_server.received) == EMAIL_REQUEST_LIMIT
    # Another address from the same client is not affected by that address's limit.
    await people.participant(email="other@example.org")
    await client.post(REQUEST_URL, json={"email": "other@example.org"})
    assert len(smtp_server.received) == EMAIL_REQUEST_LIMIT + 1


async def test_failed_verifications_are_throttled_per_address(
    client: httpx.AsyncClient, people: People, smtp_server: SmtpServer
) -> None:
    await people.participant(email="victim@example.org")
    await client.post(REQUEST_URL, json={"email": "victim@example.org"})
    [mail] = smtp_server.received
    for attempt in range(VERIFY_IP_FAILURE_LIMIT):
        response = await client.post(VERIFY_URL, json={"token": f"guess-{attempt}"})
        assert response.status_code == 401
    blocked = await client.post(VERIFY_URL, json={"token": mail.token})
    assert blocked.status_code == 429
    assert blocked.json()["error"]["code"] == "RATE_LIMITED"
    assert blocked.headers["retry-after"] == "900"


async def test_response_is_sent_before_the_lookup_and_the_email(
    app: FastAPI, client: httpx.AsyncClient, people: People, smtp_server: SmtpServer
) -> None:
    """What happens for a known address runs after the answer: its timing says nothing."""
    await people.participant(email="order@example.org")
    body = json.dumps({"email": "order@example.org"}).encode()
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    emails_when_answered: list[int] = []
    statuses: list[int] = []

    async def receive() -> Message:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])
        if message["type"] == "http.response.body" and not message.get("more_body"):
            emails_when_answered.append(len(smtp_server.received))

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
    assert statuses == [202]
    assert emails_when_answered == [0]
    assert len(smtp_server.received) == 1
