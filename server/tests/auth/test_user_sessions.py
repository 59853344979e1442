"""Login sessions: list, revoke one, revoke the others; other users' sessions stay hidden."""

from __future__ import annotations

import httpx

from tests.auth.conftest import Account, Accounts, AuditCounter, assert_error


async def _second_login(accounts: Accounts, account: Account) -> Account:
    return await accounts.login(
        Account(id=account.id, email=account.email, password=account.password)
    )


async def test_list_my_sessions_flags_current(
    client: httpx.AsyncClient, researcher: Account, accounts: Accounts
) -> None:
    await _second_login(accounts, researcher)
    response = await client.get("/api/user-sessions", headers=researcher.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["pagination"]["total"] == 2
    assert sorted(row["current"] for row in body["data"]) == [False, True]
    assert {row["user_id"] for row in body["data"]} == {str(researcher.id)}
    assert all(row["ip"] and row["last_seen_at"] and row["created_at"] for row in body["data"])


async def test_revoke_one_session(
    client: httpx.AsyncClient, researcher: Account, accounts: Accounts, audit: AuditCounter
) -> None:
    other = await _second_login(accounts, researcher)
    listed = (await client.get("/api/user-sessions", headers=researcher.headers)).json()["data"]
    target = next(row["id"] for row in listed if not row["current"])
    response = await client.delete(f"/api/user-sessions/{target}", headers=researcher.headers)
    assert response.status_code == 204
    assert_error(await client.get("/api/auth/me", headers=other.headers), 401)
    assert (await client.get("/api/auth/me", headers=researcher.headers)).status_code == 200
    await audit.one("user.session_revoked", target)
    # Listed with include_revoked, it shows the reason.
    everything = await client.get(
        "/api/user-sessions", params={"include_revoked": "true"}, headers=researcher.headers
    )
    revoked = [row for row in everything.json()["data"] if row["id"] == target]
    assert revoked[0]["revoked_reason"] == "revoked"


async def test_revoke_others(
    client: httpx.AsyncClient, researcher: Account, accounts: Accounts, audit: AuditCounter
) -> None:
    second = await _second_login(accounts, researcher)
    third = await _second_login(accounts, researcher)
    response = await client.post("/api/user-sessions/revoke-others", headers=researcher.headers)
    assert response.status_code == 200
    assert response.json() == {"revoked": 2}
    for account in (second, third):
        assert_error(await client.get("/api/auth/me", headers=account.headers), 401)
    assert (await client.get("/api/auth/me", headers=researcher.headers)).status_code == 200
    await audit.one("user.sessions_revoked", researcher.id)
    again = await client.post("/api/user-sessions/revoke-others", headers=researcher.headers)
    assert again.json() == {"revoked": 0}


async def test_non_admin_cannot_see_or_revoke_others_sessions(
    client: httpx.AsyncClient, researcher: Account, accounts: Accounts
) -> None:
    victim = await accounts.signed_in()
    victim_sessions = (await client.get("/api/user-sessions", headers=victim.headers)).json()
    victim_sid = victim_sessions["data"][0]["id"]
    listed = await client.get(
        "/api/user-sessions", params={"user_id": str(victim.id)}, headers=researcher.headers
    )
    assert_error(listed, 404, "NOT_FOUND")
    revoke = await client.delete(f"/api/user-sessions/{victim_sid}", headers=researcher.headers)
    assert_error(revoke, 404, "NOT_FOUND")
    assert (await client.get("/api/auth/me", headers=victim.headers)).status_code == 200
    unknown = await client.delete(
        "/api/user-sessions/00000000-0000-0000-0000-000000000000", headers=researcher.headers
    )
    assert_error(unknown, 404, "NOT_FOUND")


async def test_admin_lists_and_revokes_another_users_sessions(
    client: httpx.AsyncClient, admin: Account, researcher: Account
) -> None:
    listed = await client.get(
        "/api/user-sessions", params={"user_id": str(researcher.id)}, headers=admin.headers
    )
    assert listed.status_code == 200
    rows = listed.json()["data"]
    assert len(rows) == 1 and rows[0]["user_id"] == str(researcher.id)
    assert rows[0]["current"] is False
    revoked = await client.delete(f"/api/user-sessions/{rows[0]['id']}", headers=admin.headers)
    assert revoked.status_code == 204
    assert_error(await client.get("/api/auth/me", headers=researcher.headers), 401)
