"""Service accounts: created, listed and disabled by administrators; no sign-in, only access
tokens, within the account's own rights (docs/accounts.md)."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import AuditEvent
from app.models.study import MemberRole, StudyMember
from app.models.user import User, UserKind, UserRole
from tests import factories
from tests.accounts.conftest import assert_error, count_events


async def test_an_integration_acts_through_its_token_within_its_own_rights(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    created = await client.post(
        "/api/service-accounts", json={"name": "REDCap nightly"}, headers=admin.headers
    )
    assert created.status_code == 201, created.text
    account = created.json()
    assert (account["role"], account["status"], account["owner_id"]) == (
        "read_only",
        "active",
        str(admin.user_id),
    )
    row = await db_session.get(User, uuid.UUID(account["id"]))
    assert row is not None and row.kind == UserKind.SERVICE and row.password_hash is None
    assert await count_events(db_session, "service_account.create", entity_id=account["id"]) == 1

    # No interactive sign-in of any kind.
    refused = await client.post(
        "/api/auth/login", json={"email": row.email, "password": "whatever-it-is"}
    )
    assert assert_error(refused, 401)["error"]["details"]["reason"] == "SERVICE_ACCOUNT"

    theirs = await factories.study(db_session, name="Integrated")
    await factories.study(db_session, name="Not theirs")
    db_session.add(
        StudyMember(id=uuid.uuid4(), study_id=theirs.id, user_id=row.id, role=MemberRole.READ_ONLY)
    )
    await db_session.commit()

    # Scopes are checked against the account's rights, not the administrator's.
    too_much = await client.post(
        f"/api/service-accounts/{account['id']}/access-tokens",
        json={"name": "nightly", "scopes": ["read", "write"], "expires_in_days": 30},
        headers=admin.headers,
    )
    assert_error(too_much, 422)
    issued = await client.post(
        f"/api/service-accounts/{account['id']}/access-tokens",
        json={"name": "nightly", "scopes": ["read"], "expires_in_days": 30},
        headers=admin.headers,
    )
    assert issued.status_code == 201, issued.text
    token = issued.json()
    assert token["user_id"] == account["id"] and token["token"].startswith("mtk_")
    event = await db_session.scalar(
        select(AuditEvent).where(
            AuditEvent.action == "access_token.create", AuditEvent.entity_id == token["id"]
        )
    )
    assert event is not None and event.actor_id == str(admin.user_id)

    headers = factories.bearer(token["token"])
    studies = await client.get("/api/studies", headers=headers)
    assert studies.status_code == 200, studies.text
    assert [item["id"] for item in studies.json()["data"]] == [str(theirs.id)]
    write = await client.post("/api/studies", json={"name": "x", "code": "X1"}, headers=headers)
    assert assert_error(write, 403)["error"]["details"]["reason"] == "TOKEN_SCOPE"
    own_admin = await client.get("/api/service-accounts", headers=headers)
    assert assert_error(own_admin, 403)["error"]["details"]["reason"] == "TOKEN_NOT_ALLOWED"

    # The administrator lists the account's tokens like anyone's.
    listed_tokens = await client.get(
        "/api/access-tokens", params={"user_id": account["id"]}, headers=admin.headers
    )
    assert [item["id"] for item in listed_tokens.json()["data"]] == [token["id"]]

    listed = await client.get("/api/service-accounts", headers=admin.headers)
    assert [item["id"] for item in listed.json()["data"]] == [account["id"]]
    disabled = await client.post(
        f"/api/service-accounts/{account['id']}/disable", headers=admin.headers
    )
    assert disabled.status_code == 200 and disabled.json()["status"] == "disabled"
    assert await count_events(db_session, "service_account.disable", entity_id=account["id"]) == 1
    # Its token stops at once; it leaves the default list; no new token for it.
    assert_error(await client.get("/api/studies", headers=headers), 401)
    assert (await client.get("/api/service-accounts", headers=admin.headers)).json()["data"] == []
    everything = await client.get(
        "/api/service-accounts", params={"include_disabled": True}, headers=admin.headers
    )
    assert [item["status"] for item in everything.json()["data"]] == ["disabled"]
    again = await client.post(
        f"/api/service-accounts/{account['id']}/access-tokens",
        json={"name": "again", "scopes": ["read"], "expires_in_days": 1},
        headers=admin.headers,
    )
    assert_error(again, 404)


async def test_only_administrators_manage_service_accounts(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    researcher = await factories.staff(db_session, client, UserRole.RESEARCHER)
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    for method, path in (
        ("POST", "/api/service-accounts"),
        ("GET", "/api/service-accounts"),
        ("POST", f"/api/service-accounts/{uuid.uuid4()}/disable"),
    ):
        response = await client.request(
            method, path, json={"name": "x"}, headers=researcher.headers
        )
        assert_error(response, 403)
    # Administrators cannot make an administrator service account.
    assert_error(
        await client.post(
            "/api/service-accounts", json={"name": "x", "role": "admin"}, headers=admin.headers
        ),
        422,
    )
    # Nor make one an administrator afterwards.
    account = await client.post(
        "/api/service-accounts", json={"name": "pipeline"}, headers=admin.headers
    )
    promoted = await client.patch(
        f"/api/users/{account.json()['id']}", json={"role": "admin"}, headers=admin.headers
    )
    assert_error(promoted, 422)
    # A person is not a service account.
    for path in (
        f"/api/service-accounts/{researcher.user_id}",
        f"/api/service-accounts/{researcher.user_id}/disable",
    ):
        method = "GET" if path.endswith(str(researcher.user_id)) else "POST"
        assert_error(await client.request(method, path, headers=admin.headers), 404)
