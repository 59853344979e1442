"""Staff invitations end to end: invite by email, open the link, choose a password, sign in."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.models.invitation import Invitation
from app.models.study import MemberRole, StudyMember
from app.models.user import User, UserRole
from tests import factories
from tests.accounts.conftest import assert_error, count_events, last_mail_to, link_token
from tests.magic_links.conftest import SmtpServer

NEW_PASSWORD = "Purple-Giraffe-Orbit-1987"


async def _invite(
    client: httpx.AsyncClient, headers: dict[str, str], **body: object
) -> dict[str, object]:
    payload = {"email": f"new-{uuid.uuid4().hex[:8]}@example.org", "name": "Grace Hopper"}
    payload.update(body)  # type: ignore[arg-type]
    payload.setdefault("role", "coordinator")
    response = await client.post("/api/invitations", json=payload, headers=headers)
    assert response.status_code == 201, response.text
    data: dict[str, object] = response.json()
    return data


async def test_invited_coordinator_sets_a_password_and_signs_in(
    client: httpx.AsyncClient,
    db_session: AsyncSession,
    smtp_server: SmtpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    study = await factories.study(db_session)
    site = await factories.site(db_session, study, "PARIS")
    # A refused request rolls back and expires the session's rows: keep the ids.
    study_id, site_id = study.id, site.id
    email = f"ada.coordinator-{uuid.uuid4().hex[:6]}@example.org"

    invitation = await _invite(
        client,
        admin.headers,
        email=email.upper(),
        role="coordinator",
        study_id=str(study_id),
        member_role="coordinator",
        site="PARIS",
    )
    assert invitation["status"] == "pending"
    assert invitation["email"] == email
    assert invitation["site_id"] == str(site_id)
    assert "token" not in invitation and "token_hash" not in invitation

    token = link_token(last_mail_to(smtp_server, email), "invitation")
    row = await db_session.get(Invitation, uuid.UUID(str(invitation["id"])))
    assert row is not None and token not in row.token_hash  # stored hashed
    assert email not in caplog.text and token not in caplog.text

    preview = await client.post("/api/auth/invitation", json={"token": token})
    assert preview.status_code == 200, preview.text
    assert preview.json()["email"] == email
    assert preview.json()["two_factor_required"] is False
    assert preview.json()["totp_secret"] is None

    # The password policy of registration; a refusal does not use the link up.
    weak = await client.post(
        "/api/auth/invitation/accept", json={"token": token, "password": "short"}
    )
    body = assert_error(weak, 422, "VALIDATION_ERROR")
    assert body["error"]["details"]["errors"][0]["field"] == "password"

    accepted = await client.post(
        "/api/auth/invitation/accept", json={"token": token, "password": NEW_PASSWORD}
    )
    assert accepted.status_code == 201, accepted.text
    user_id = uuid.UUID(accepted.json()["id"])
    assert accepted.json()["role"] == "coordinator"

    login = await factories.login(client, email, NEW_PASSWORD)
    assert login["must_change_password"] is False
    headers = factories.bearer(login["access_token"])
    assert (await client.get(f"/api/studies/{study_id}", headers=headers)).status_code == 200
    member = await db_session.scalar(select(StudyMember).where(StudyMember.user_id == user_id))
    assert member is not None
    assert (member.study_id, member.role, member.site_id) == (
        study_id,
        MemberRole.COORDINATOR,
        site_id,
    )

    # Single use.
    again = await client.post(
        "/api/auth/invitation/accept", json={"token": token, "password": NEW_PASSWORD}
    )
    assert_error(again, 401, "UNAUTHORIZED")
    listed = await client.get("/api/invitations?include_closed=true", headers=admin.headers)
    [closed] = [i for i in listed.json()["data"] if i["id"] == invitation["id"]]
    assert closed["status"] == "accepted" and closed["accepted_user_id"] == str(user_id)
    pending = await client.get("/api/invitations", headers=admin.headers)
    assert invitation["id"] not in [i["id"] for i in pending.json()["data"]]

    entity = str(invitation["id"])
    assert await count_events(db_session, "invitation.create", entity_id=entity) == 1
    assert await count_events(db_session, "invitation.accept", entity_id=entity) == 1
    assert await count_events(db_session, "invitation.accept_failed", entity_id=entity) == 1
    assert await count_events(db_session, "user.create", entity_id=str(user_id)) == 1
    assert await count_events(db_session, "member.add", entity_id=str(member.id)) == 1


async def test_resend_kills_the_previous_link(
    client: httpx.AsyncClient, db_session: AsyncSession, smtp_server: SmtpServer
) -> None:
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    invitation = await _invite(client, admin.headers, role="read_only")
    email = str(invitation["email"])
    first = link_token(last_mail_to(smtp_server, email), "invitation")

    resent = await client.post(f"/api/invitations/{invitation['id']}/resend", headers=admin.headers)
    assert resent.status_code == 200, resent.text
    assert resent.json()["sent_count"] == 2
    second = link_token(last_mail_to(smtp_server, email), "invitation")
    assert second != first
    assert len([m for m in smtp_server.received if email in m.recipients]) == 2

    old = await client.post("/api/auth/invitation", json={"token": first})
    assert_error(old, 401)
    accepted = await client.post(
        "/api/auth/invitation/accept", json={"token": second, "password": NEW_PASSWORD}
    )
    assert accepted.status_code == 201, accepted.text
    assert await count_events(db_session, "invitation.resend", entity_id=invitation["id"]) == 1
    # Accepted: nothing to resend or revoke any more.
    late = await client.post(f"/api/invitations/{invitation['id']}/resend", headers=admin.headers)
    assert_error(late, 409, "CONFLICT")


async def test_revoked_and_expired_links_do_not_work(
    client: httpx.AsyncClient, db_session: AsyncSession, smtp_server: SmtpServer
) -> None:
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    revoked = await _invite(client, admin.headers)
    revoked_token = link_token(last_mail_to(smtp_server, str(revoked["email"])), "invitation")
    response = await client.delete(f"/api/invitations/{revoked['id']}", headers=admin.headers)
    assert response.status_code == 204
    assert_error(
        await client.delete(f"/api/invitations/{revoked['id']}", headers=admin.headers), 409
    )
    refused = await client.post(
        "/api/auth/invitation/accept", json={"token": revoked_token, "password": NEW_PASSWORD}
    )
    assert_error(refused, 401)
    assert await count_events(db_session, "invitation.revoke", entity_id=revoked["id"]) == 1

    expired = await _invite(client, admin.headers)
    expired_token = link_token(last_mail_to(smtp_server, str(expired["email"])), "invitation")
    await db_session.execute(
        update(Invitation)
        .where(Invitation.id == uuid.UUID(str(expired["id"])))
        .values(expires_at=utcnow() - timedelta(minutes=1))
    )
    await db_session.commit()
    refused = await client.post(
        "/api/auth/invitation/accept", json={"token": expired_token, "password": NEW_PASSWORD}
    )
    assert_error(refused, 401)
    pending = (await client.get("/api/invitations", headers=admin.headers)).json()["data"]
    assert {revoked["id"], expired["id"]}.isdisjoint(i["id"] for i in pending)
    everything = await client.get("/api/invitations?include_closed=true", headers=admin.headers)
    states = {i["id"]: i["status"] for i in everything.json()["data"]}
    assert states[str(revoked["id"])] == "revoked"
    assert states[str(expired["id"])] == "expired"

    # An expired invitation can be sent again; the new link works.
    resent = await client.post(f"/api/invitations/{expired['id']}/resend", headers=admin.headers)
    assert resent.status_code == 200 and resent.json()["status"] == "pending"
    fresh = link_token(last_mail_to(smtp_server, str(expired["email"])), "invitation")
    accepted = await client.post(
        "/api/auth/invitation/accept", json={"token": fresh, "password": NEW_PASSWORD}
    )
    assert accepted.status_code == 201, accepted.text


async def test_conflicts_and_validation(
    client: httpx.AsyncClient, db_session: AsyncSession, smtp_server: SmtpServer
) -> None:
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    existing = await factories.user(db_session, UserRole.COORDINATOR)
    taken = await client.post(
        "/api/invitations",
        json={"email": existing.email, "name": "X", "role": "coordinator"},
        headers=admin.headers,
    )
    assert_error(taken, 409, "CONFLICT")
    first = await _invite(client, admin.headers)
    twice = await client.post(
        "/api/invitations",
        json={"email": first["email"], "name": "X", "role": "coordinator"},
        headers=admin.headers,
    )
    assert_error(twice, 409)
    no_role = await client.post(
        "/api/invitations",
        json={
            "email": "m@example.org",
            "name": "X",
            "role": "coordinator",
            "study_id": str(uuid.uuid4()),
        },
        headers=admin.headers,
    )
    assert_error(no_role, 422, "VALIDATION_ERROR")
    bad_email = await client.post(
        "/api/invitations",
        json={"email": "nope", "name": "X", "role": "admin"},
        headers=admin.headers,
    )
    assert_error(bad_email, 422)
    unknown = await client.post(
        "/api/invitations",
        json={
            "email": "m@example.org",
            "name": "X",
            "role": "coordinator",
            "study_id": str(uuid.uuid4()),
            "member_role": "coordinator",
        },
        headers=admin.headers,
    )
    assert_error(unknown, 404, "NOT_FOUND")
    # Temporary passwords stay possible for deployments without email.
    registered = await client.post(
        "/api/auth/register",
        json={"email": "temp-pass@example.org", "name": "Temp", "role": "coordinator"},
        headers=admin.headers,
    )
    assert registered.status_code == 201 and registered.json()["temporary_password"]


async def test_study_researchers_invite_for_their_own_study(
    client: httpx.AsyncClient, db_session: AsyncSession, smtp_server: SmtpServer
) -> None:
    study = await factories.study(db_session)
    other = await factories.study(db_session)
    study_id, other_id = study.id, other.id  # refused requests expire the session's rows
    researcher = await factories.staff(db_session, client, UserRole.RESEARCHER)
    await factories.member(db_session, study, researcher, MemberRole.RESEARCHER)
    coordinator = await factories.staff(db_session, client, UserRole.COORDINATOR)
    await factories.member(db_session, study, coordinator, MemberRole.COORDINATOR)
    admin = await factories.staff(db_session, client, UserRole.ADMIN)

    own = await _invite(
        client,
        researcher.headers,
        study_id=str(study_id),
        member_role="read_only",
        role="read_only",
    )
    assert own["invited_by"] == str(researcher.user_id)

    def body(**extra: object) -> dict[str, object]:
        return {
            "email": f"x-{uuid.uuid4().hex[:6]}@example.org",
            "name": "X",
            "role": "coordinator",
            **extra,
        }

    no_study = await client.post("/api/invitations", json=body(), headers=researcher.headers)
    assert_error(no_study, 403, "FORBIDDEN")
    elsewhere = await client.post(
        "/api/invitations",
        json=body(study_id=str(other_id), member_role="coordinator"),
        headers=researcher.headers,
    )
    assert_error(elsewhere, 404)
    as_admin = await client.post(
        "/api/invitations",
        json=body(role="admin", study_id=str(study_id), member_role="researcher"),
        headers=researcher.headers,
    )
    assert_error(as_admin, 403)
    by_coordinator = await client.post(
        "/api/invitations",
        json=body(study_id=str(study_id), member_role="coordinator"),
        headers=coordinator.headers,
    )
    assert_error(by_coordinator, 403)

    foreign = await _invite(
        client, admin.headers, study_id=str(other_id), member_role="coordinator"
    )
    listed = await client.get("/api/invitations", headers=researcher.headers)
    ids = [i["id"] for i in listed.json()["data"]]
    assert own["id"] in ids and foreign["id"] not in ids
    assert (await client.get("/api/invitations", headers=coordinator.headers)).json()["data"] == []
    assert_error(
        await client.delete(f"/api/invitations/{foreign['id']}", headers=researcher.headers), 404
    )
    assert_error(
        await client.get(f"/api/invitations/{foreign['id']}", headers=researcher.headers), 404
    )
    revoked = await client.delete(f"/api/invitations/{own['id']}", headers=researcher.headers)
    assert revoked.status_code == 204
    event_study = await count_events(
        db_session, "invitation.revoke", entity_id=own["id"], study_id=study_id
    )
    assert event_study == 1


async def test_two_factor_enrolment_when_the_invitation_requires_it(
    client: httpx.AsyncClient, db_session: AsyncSession, smtp_server: SmtpServer
) -> None:
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    invitation = await _invite(client, admin.headers, role="researcher", two_factor_required=True)
    email = str(invitation["email"])
    token = link_token(last_mail_to(smtp_server, email), "invitation")

    preview = (await client.post("/api/auth/invitation", json={"token": token})).json()
    assert preview["two_factor_required"] is True
    secret = preview["totp_secret"]
    assert preview["otpauth_uri"].startswith("otpauth://totp/")

    missing = await client.post(
        "/api/auth/invitation/accept", json={"token": token, "password": NEW_PASSWORD}
    )
    assert assert_error(missing, 422)["error"]["details"]["reason"] == "TWO_FACTOR_REQUIRED"
    wrong_code = "000000" if pyotp.TOTP(secret).now() != "000000" else "111111"
    wrong = await client.post(
        "/api/auth/invitation/accept",
        json={
            "token": token,
            "password": NEW_PASSWORD,
            "totp_secret": secret,
            "totp_code": wrong_code,
        },
    )
    assert_error(wrong, 422)
    accepted = await client.post(
        "/api/auth/invitation/accept",
        json={
            "token": token,
            "password": NEW_PASSWORD,
            "totp_secret": secret,
            "totp_code": pyotp.TOTP(secret).now(),
        },
    )
    assert accepted.status_code == 201, accepted.text
    user = await db_session.get(User, uuid.UUID(accepted.json()["id"]))
    assert user is not None and user.totp_enabled and secret not in str(user.totp_secret_encrypted)

    login = await client.post("/api/auth/login", json={"email": email, "password": NEW_PASSWORD})
    assert login.json()["mfa_required"] is True
    assert await count_events(db_session, "user.2fa_enabled", entity_id=str(user.id)) == 1


async def test_the_deployment_can_require_two_factor_for_every_invitation(
    app: FastAPI, client: httpx.AsyncClient, db_session: AsyncSession, smtp_server: SmtpServer
) -> None:
    app.state.settings = app.state.settings.model_copy(
        update={"INVITATIONS_REQUIRE_TWO_FACTOR": True}
    )
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    invitation = await _invite(client, admin.headers)
    token = link_token(last_mail_to(smtp_server, str(invitation["email"])), "invitation")
    preview = (await client.post("/api/auth/invitation", json={"token": token})).json()
    assert preview["two_factor_required"] is True and preview["totp_secret"]


async def test_invalid_links_are_throttled_per_address(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    for _ in range(20):
        assert_error(await client.post("/api/auth/invitation", json={"token": "guess"}), 401)
    assert_error(
        await client.post("/api/auth/invitation", json={"token": "guess"}), 429, "RATE_LIMITED"
    )
    assert await count_events(db_session, "invitation.accept_failed") >= 20
