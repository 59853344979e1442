"""Personal access tokens: a script downloads data with a read token and is refused writes."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.models.audit import AuditEvent
from app.models.study import MemberRole
from app.models.user import PersonalAccessToken, User, UserRole, UserStatus
from tests import factories
from tests.accounts.conftest import assert_error, count_events
from tests.assessments.conftest import World, build_world, start
from tests.factories import simple_rt_trials, submit

URL = "/api/access-tokens"


async def _create(
    client: httpx.AsyncClient, headers: dict[str, str], scopes: list[str], days: int = 30
) -> dict[str, Any]:
    response = await client.post(
        URL,
        json={"name": f"script {'+'.join(scopes)}", "scopes": scopes, "expires_in_days": days},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _world_with_a_session(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> tuple[World, str]:
    world = await build_world(client, db_session, settings)
    session_id = (await start(client, world)).json()["session_id"]
    submitted = await submit(client, world.participant, session_id, {"trials": simple_rt_trials()})
    assert submitted.status_code in (200, 201), submitted.text
    return world, session_id


async def test_a_read_only_token_downloads_data_and_is_refused_a_write(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> None:
    world, session_id = await _world_with_a_session(client, db_session, settings)
    read = await _create(client, world.researcher, ["read"])
    export = await _create(client, world.researcher, ["read", "export"])
    secret = read["token"]
    assert secret.startswith("mtk_") and read["prefix"] == secret[:10]
    assert read["scopes"] == ["read"] and export["scopes"] == ["read", "export"]
    stored = await db_session.get(PersonalAccessToken, uuid.UUID(read["id"]))
    assert stored is not None and secret not in stored.token_hash  # stored hashed

    as_read = factories.bearer(secret)
    as_export = factories.bearer(export["token"])
    study = await client.get(f"/api/studies/{world.study_id}", headers=as_read)
    assert study.status_code == 200, study.text
    listed = await client.get(f"/api/participants?study_id={world.study_id}", headers=as_read)
    assert listed.status_code == 200 and listed.json()["pagination"]["total"] == 2

    # Routes that staff and participants share take the token too.
    detail = await client.get(f"/api/session/{session_id}", headers=as_read)
    assert detail.status_code == 200, detail.text
    end = await client.post("/api/session/end", json={"session_id": session_id}, headers=as_read)
    assert assert_error(end, 403)["error"]["details"]["reason"] == "TOKEN_SCOPE"

    # The raw data download needs the export scope (and the user's export capability).
    source = f"/api/sessions/{session_id}/source/simple-rt"
    no_export = await client.get(source, headers=as_read)
    assert assert_error(no_export, 403)["error"]["details"]["required"] == "export"
    downloaded = await client.get(source, headers=as_export)
    assert downloaded.status_code == 200 and downloaded.headers["ETag"]

    # Writes: refused with 403 in the error envelope, whatever the user's own rights.
    body = {"study_id": str(world.study_id), "participant_id": "P900"}
    for headers in (as_read, as_export):
        refused = await client.post("/api/participants", json=body, headers=headers)
        details = assert_error(refused, 403, "FORBIDDEN")["error"]["details"]
        assert details == {"reason": "TOKEN_SCOPE", "required_scope": "write"}

    # Listed without the secret, with its last use.
    tokens = (await client.get(URL, headers=world.researcher)).json()["data"]
    by_id = {token["id"]: token for token in tokens}
    assert set(by_id) == {read["id"], export["id"]}
    assert "token" not in by_id[read["id"]]
    assert by_id[read["id"]]["last_used_at"] is not None
    assert by_id[read["id"]]["last_used_ip"] == "127.0.0.1"
    assert await count_events(db_session, "access_token.create", entity_id=read["id"]) == 1


async def test_a_write_token_acts_as_its_user_and_is_audited_via_the_token(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> None:
    world = await build_world(client, db_session, settings)
    me = (await client.get("/api/auth/me", headers=world.researcher)).json()
    token = await _create(client, world.researcher, ["read", "write"])
    created = await client.post(
        "/api/participants",
        json={"study_id": str(world.study_id), "participant_id": "P901"},
        headers=factories.bearer(token["token"]),
    )
    assert created.status_code == 201, created.text
    event = await db_session.scalar(
        select(AuditEvent).where(
            AuditEvent.participant_id == uuid.UUID(created.json()["id"]),
            AuditEvent.token_id == uuid.UUID(token["id"]),
        )
    )
    assert event is not None
    assert (event.actor_type, event.actor_id) == ("user", me["id"])
    listed = await client.get(
        f"/api/audit?study_id={world.study_id}&actor_id={me['id']}", headers=world.researcher
    )
    assert str(token["id"]) in [e["token_id"] for e in listed.json()["data"]]
    # Events of a signed-in session name no token.
    signed_in = await client.post(
        "/api/participants",
        json={"study_id": str(world.study_id), "participant_id": "P902"},
        headers=world.researcher,
    )
    plain = await db_session.scalar(
        select(AuditEvent).where(AuditEvent.participant_id == uuid.UUID(signed_in.json()["id"]))
    )
    assert plain is not None and plain.token_id is None


async def test_revoked_expired_and_disabled_tokens_are_refused(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    owner = await factories.staff(db_session, client, UserRole.RESEARCHER)
    other = await factories.staff(db_session, client, UserRole.RESEARCHER)
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    first = await _create(client, owner.headers, ["read"])
    second = await _create(client, owner.headers, ["read"])
    third = await _create(client, owner.headers, ["read"])
    assert (await client.get("/api/studies", headers=factories.bearer(first["token"]))).is_success

    assert_error(await client.delete(f"{URL}/{first['id']}", headers=other.headers), 404)
    assert (await client.delete(f"{URL}/{first['id']}", headers=owner.headers)).status_code == 204
    assert_error(await client.get("/api/studies", headers=factories.bearer(first["token"])), 401)
    assert await count_events(db_session, "access_token.revoke", entity_id=first["id"]) == 1

    await db_session.execute(
        update(PersonalAccessToken)
        .where(PersonalAccessToken.id == uuid.UUID(second["id"]))
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    await db_session.commit()
    assert_error(await client.get("/api/studies", headers=factories.bearer(second["token"])), 401)
    assert_error(await client.get("/api/studies", headers=factories.bearer("mtk_guess")), 401)

    active = (await client.get(URL, headers=owner.headers)).json()["data"]
    assert [t["id"] for t in active] == [third["id"]]
    everything = await client.get(f"{URL}?include_revoked=true", headers=owner.headers)
    assert len(everything.json()["data"]) == 3
    assert_error(await client.get(f"{URL}?user_id={owner.user_id}", headers=other.headers), 403)
    seen = await client.get(f"{URL}?user_id={owner.user_id}", headers=admin.headers)
    assert [t["id"] for t in seen.json()["data"]] == [third["id"]]

    user = await db_session.get(User, owner.user_id)
    assert user is not None
    user.status = UserStatus.DISABLED
    await db_session.commit()
    assert_error(await client.get("/api/studies", headers=factories.bearer(third["token"])), 401)


async def test_scopes_are_a_subset_of_the_users_rights(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    study = await factories.study(db_session)
    # Global role read_only, read_only member: no write anywhere, no export.
    viewer = await factories.study_member(db_session, client, study, MemberRole.READ_ONLY)
    coordinator = await factories.study_member(db_session, client, study, MemberRole.COORDINATOR)

    async def refused(headers: dict[str, str], scopes: list[str]) -> None:
        response = await client.post(
            URL, json={"name": "x", "scopes": scopes, "expires_in_days": 7}, headers=headers
        )
        assert assert_error(response, 422)["error"]["details"]["errors"][0]["field"] == "scopes"

    await refused(viewer.headers, ["read", "write"])
    await refused(viewer.headers, ["read", "export"])
    await refused(coordinator.headers, ["read", "export"])
    await refused(coordinator.headers, ["write"])  # read is always in
    await _create(client, coordinator.headers, ["read", "write"])
    await _create(client, viewer.headers, ["read"])
    too_long = await client.post(
        URL, json={"name": "x", "scopes": ["read"], "expires_in_days": 366}, headers=viewer.headers
    )
    assert_error(too_long, 422)


async def test_tokens_cannot_manage_accounts_or_tokens(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    token = factories.bearer((await _create(client, admin.headers, ["read", "write"]))["token"])
    for method, path in (
        ("GET", "/api/auth/me"),
        ("POST", URL),
        ("GET", URL),
        ("GET", "/api/users"),
        ("GET", "/api/user-sessions"),
        ("GET", "/api/invitations"),
    ):
        response = await client.request(
            method,
            path,
            headers=token,
            json={"name": "x", "scopes": ["read"], "expires_in_days": 1},
        )
        assert assert_error(response, 403)["error"]["details"]["reason"] == "TOKEN_NOT_ALLOWED"
    assert (await client.get("/api/audit", headers=token)).status_code == 200
