"""Single sign-on end to end against an OpenID Connect provider on 127.0.0.1 (docs/accounts.md).

The provider runs over real HTTP in the test process; the server discovers it, exchanges the
code with PKCE, fetches its JWKS and validates the id token. The browser's part (following the
redirects) is played by the test: the API's redirect to the provider, the provider's redirect
back to the callback.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.main import create_app
from app.models.audit import AuditEvent
from app.models.study import MemberRole, StudyMember
from app.models.user import User, UserKind, UserRole
from tests import factories
from tests.accounts.conftest import assert_error, count_events
from tests.accounts.oidc_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    OidcProvider,
    Person,
    serve_provider,
)
from tests.conftest import lifespan_client, make_settings

PROVIDER = "corp"


@pytest.fixture
def oidc() -> Iterator[OidcProvider]:
    yield from serve_provider()


def _provider_settings(oidc: OidcProvider, **overrides: object) -> dict[str, object]:
    return {
        "issuer": oidc.issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "allowed_email_domains": ["hospital.example"],
        "create_accounts": False,
        **overrides,
    }


@pytest.fixture
def settings(database_url: str, storage_dir: Path, oidc: OidcProvider) -> Settings:
    return make_settings(
        database_url,
        storage_dir,
        PUBLIC_BASE_URL="http://testserver",
        OIDC_PROVIDERS={
            PROVIDER: _provider_settings(oidc),
            "jit": _provider_settings(oidc, create_accounts=True, default_role="coordinator"),
        },
    )


async def _start(client: httpx.AsyncClient, provider: str = PROVIDER) -> str:
    """The API's redirect to the provider's authorization endpoint."""
    response = await client.get(f"/api/auth/sso/{provider}/login")
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def _at_provider(authorize_url: str) -> str:
    """What the browser does at the provider: the path and query it is sent back to."""
    async with httpx.AsyncClient() as browser:
        response = await browser.get(authorize_url)
    assert response.status_code == 302, response.text
    back = urlsplit(response.headers["location"])
    assert back.scheme == "http" and back.netloc == "testserver"
    return f"{back.path}?{back.query}"


async def _sign_in(client: httpx.AsyncClient, provider: str = PROVIDER) -> httpx.Response:
    callback = await _at_provider(await _start(client, provider))
    return await client.get(callback)


async def _person(db_session: AsyncSession, email: str, **fields: Any) -> User:
    return await factories.user(db_session, UserRole.COORDINATOR, email=email, **fields)


async def test_the_redirect_carries_state_nonce_and_an_s256_challenge(
    client: httpx.AsyncClient, oidc: OidcProvider
) -> None:
    location = urlsplit(await _start(client))
    assert f"{location.scheme}://{location.netloc}{location.path}" == oidc.issuer + "/authorize"
    query = {name: values[0] for name, values in parse_qs(location.query).items()}
    assert query["client_id"] == CLIENT_ID
    assert query["response_type"] == "code"
    assert query["code_challenge_method"] == "S256"
    assert query["redirect_uri"] == f"http://testserver/api/auth/sso/{PROVIDER}/callback"
    assert set(query["scope"].split()) == {"openid", "email", "profile"}
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32
    # Two sign-ins never share a state or a nonce.
    again = parse_qs(urlsplit(await _start(client)).query)
    assert again["state"][0] != query["state"] and again["nonce"][0] != query["nonce"]


async def test_a_provisioned_user_signs_in_and_reaches_only_their_studies(
    client: httpx.AsyncClient, db_session: AsyncSession, oidc: OidcProvider
) -> None:
    account = await _person(db_session, "ada@hospital.example")
    theirs = await factories.study(db_session, name="Theirs")
    other = await factories.study(db_session, name="Someone else's")
    db_session.add(
        StudyMember(
            id=uuid.uuid4(), study_id=theirs.id, user_id=account.id, role=MemberRole.COORDINATOR
        )
    )
    await db_session.commit()
    oidc.person = Person(sub="idp-ada", email="Ada@Hospital.example")

    response = await _sign_in(client)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["id"] == str(account.id)
    assert body["tokens"]["refresh_token"]
    headers = factories.bearer(body["access_token"])
    me = await client.get("/api/auth/me", headers=headers)
    assert me.status_code == 200 and me.json()["email"] == "ada@hospital.example"
    studies = await client.get("/api/studies", headers=headers)
    assert studies.status_code == 200, studies.text
    assert [item["id"] for item in studies.json()["data"]] == [str(theirs.id)]
    assert (await client.get(f"/api/studies/{other.id}", headers=headers)).status_code == 404
    # The refresh token works as after a password sign-in.
    refreshed = await client.post(
        "/api/auth/refresh", json={"refresh_token": body["tokens"]["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    event = await db_session.scalar(
        select(AuditEvent).where(
            AuditEvent.action == "user.login", AuditEvent.actor_id == str(account.id)
        )
    )
    assert event is not None and event.after is not None
    assert event.after["method"] == f"sso:{PROVIDER}"


async def test_an_unknown_address_gets_an_account_when_the_provider_creates_them(
    client: httpx.AsyncClient, db_session: AsyncSession, oidc: OidcProvider
) -> None:
    oidc.person = Person(sub="idp-new", email="grace@hospital.example", name="Grace Hopper")

    response = await _sign_in(client, "jit")

    assert response.status_code == 200, response.text
    created = await db_session.scalar(select(User).where(User.email == "grace@hospital.example"))
    assert created is not None
    assert (created.role, created.kind, created.name) == (
        UserRole.COORDINATOR,
        UserKind.PERSON,
        "Grace Hopper",
    )
    assert created.password_hash is None and not created.must_change_password
    assert await count_events(db_session, "user.create", entity_id=str(created.id)) == 1
    # A coordinator with no membership sees no study.
    studies = await client.get(
        "/api/studies", headers=factories.bearer(response.json()["access_token"])
    )
    assert studies.json()["data"] == []
    # No password opens an account that signs in through single sign-on only.
    refused = await client.post(
        "/api/auth/login", json={"email": "grace@hospital.example", "password": "anything-at-all"}
    )
    body = assert_error(refused, 401, "UNAUTHORIZED")
    assert body["error"]["details"]["reason"] == "SSO_ONLY"
    # And no reset link gives it one.
    reset = await client.post("/api/auth/password-reset", json={"email": "grace@hospital.example"})
    assert reset.status_code == 202
    assert await count_events(db_session, "user.password_reset_requested") == 0


async def test_an_administrator_provisions_an_account_that_signs_in_only_through_sso(
    client: httpx.AsyncClient, db_session: AsyncSession, oidc: OidcProvider
) -> None:
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    both = await client.post(
        "/api/auth/register",
        json={
            "email": "lin@hospital.example",
            "name": "Lin",
            "role": "researcher",
            "sso_only": True,
            "password": "a-password-anyway-123",
        },
        headers=admin.headers,
    )
    assert_error(both, 422)
    created = await client.post(
        "/api/auth/register",
        json={
            "email": "lin@hospital.example",
            "name": "Lin",
            "role": "researcher",
            "sso_only": True,
        },
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    assert created.json()["temporary_password"] is None
    assert created.json()["user"]["must_change_password"] is False
    row = await db_session.scalar(select(User).where(User.email == "lin@hospital.example"))
    assert row is not None and row.password_hash is None

    oidc.person = Person(sub="idp-lin", email="lin@hospital.example")
    response = await _sign_in(client)
    assert response.status_code == 200, response.text
    assert response.json()["user"] == {
        **response.json()["user"],
        "id": str(row.id),
        "role": "researcher",
    }


async def _refused(
    client: httpx.AsyncClient, db_session: AsyncSession, reason: str, provider: str = PROVIDER
) -> None:
    before = await count_events(db_session, "user.sso_login_failed")
    response = await _sign_in(client, provider)
    body = assert_error(response, 401, "UNAUTHORIZED")
    assert body["error"]["details"]["reason"] == reason
    assert await count_events(db_session, "user.sso_login_failed") == before + 1
    assert "tokens" not in response.text


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("bad_signature", "invalid_signature"),
        ("wrong_audience", "invalid_aud"),
        ("expired", "invalid_exp"),
        ("wrong_nonce", "invalid_nonce"),
        ("wrong_issuer", "invalid_iss"),
    ],
)
async def test_an_id_token_that_fails_validation_is_refused(
    client: httpx.AsyncClient,
    db_session: AsyncSession,
    oidc: OidcProvider,
    fault: Any,
    reason: str,
) -> None:
    await _person(db_session, "ada@hospital.example")
    oidc.person = Person(sub="idp-ada", email="ada@hospital.example")
    oidc.fault = fault
    await _refused(client, db_session, reason)
    # The same person signs in once the provider behaves.
    oidc.fault = None
    assert (await _sign_in(client)).status_code == 200


async def test_an_unverified_address_is_refused(
    client: httpx.AsyncClient, db_session: AsyncSession, oidc: OidcProvider
) -> None:
    await _person(db_session, "ada@hospital.example")
    oidc.person = Person(sub="idp-ada", email="ada@hospital.example", email_verified=False)
    await _refused(client, db_session, "email_not_verified")
    oidc.person = Person(sub="idp-x", email="x@hospital.example", email_verified=False)
    await _refused(client, db_session, "email_not_verified", "jit")
    assert await db_session.scalar(select(User).where(User.email == "x@hospital.example")) is None


async def test_another_domain_and_an_unknown_address_are_refused(
    client: httpx.AsyncClient, db_session: AsyncSession, oidc: OidcProvider
) -> None:
    await _person(db_session, "eve@elsewhere.example")
    oidc.person = Person(sub="idp-eve", email="eve@elsewhere.example")
    await _refused(client, db_session, "domain_not_allowed")
    oidc.person = Person(sub="idp-nobody", email="nobody@hospital.example")
    await _refused(client, db_session, "no_account")


async def test_a_replayed_callback_and_a_replayed_code_are_refused(
    client: httpx.AsyncClient, db_session: AsyncSession, oidc: OidcProvider
) -> None:
    await _person(db_session, "ada@hospital.example")
    oidc.person = Person(sub="idp-ada", email="ada@hospital.example")
    callback = await _at_provider(await _start(client))
    assert (await client.get(callback)).status_code == 200

    # The same state again: used up.
    replayed = await client.get(callback)
    assert assert_error(replayed, 401)["error"]["details"]["reason"] == "invalid_state"
    # The same code with a fresh state: the provider refuses a code used before.
    code = parse_qs(urlsplit(callback).query)["code"][0]
    fresh_state = parse_qs(urlsplit(await _start(client)).query)["state"][0]
    requests = oidc.token_requests
    reused = await client.get(
        f"/api/auth/sso/{PROVIDER}/callback", params={"code": code, "state": fresh_state}
    )
    assert assert_error(reused, 401)["error"]["details"]["reason"] == "code_refused"
    assert oidc.token_requests == requests + 1
    # A state never issued, or none at all.
    for params in ({"code": code, "state": "made-up"}, {"code": code}):
        made_up = await client.get(f"/api/auth/sso/{PROVIDER}/callback", params=params)
        assert assert_error(made_up, 401)["error"]["details"]["reason"] == "invalid_state"
    # A state is bound to its provider.
    other_state = parse_qs(urlsplit(await _start(client, "jit")).query)["state"][0]
    crossed = await client.get(
        f"/api/auth/sso/{PROVIDER}/callback", params={"code": code, "state": other_state}
    )
    assert assert_error(crossed, 401)["error"]["details"]["reason"] == "invalid_state"


async def test_a_cancelled_sign_in_uses_up_its_state(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    state = parse_qs(urlsplit(await _start(client)).query)["state"][0]
    cancelled = await client.get(
        f"/api/auth/sso/{PROVIDER}/callback", params={"error": "access_denied", "state": state}
    )
    assert assert_error(cancelled, 401)["error"]["details"]["reason"] == "provider_error"
    again = await client.get(
        f"/api/auth/sso/{PROVIDER}/callback", params={"code": "x", "state": state}
    )
    assert assert_error(again, 401)["error"]["details"]["reason"] == "invalid_state"


async def test_a_disabled_account_is_refused(
    client: httpx.AsyncClient, db_session: AsyncSession, oidc: OidcProvider
) -> None:
    account = await _person(db_session, "ada@hospital.example")
    account.status = "disabled"  # type: ignore[assignment]
    await db_session.commit()
    oidc.person = Person(sub="idp-ada", email="ada@hospital.example")
    await _refused(client, db_session, "account_disabled")


async def test_providers_are_listed_and_an_unknown_one_is_404(client: httpx.AsyncClient) -> None:
    listed = await client.get("/api/auth/sso")
    assert listed.status_code == 200
    assert [item["key"] for item in listed.json()["data"]] == ["corp", "jit"]
    assert_error(await client.get("/api/auth/sso/nope/login"), 404, "NOT_FOUND")
    assert_error(
        await client.get("/api/auth/sso/nope/callback", params={"code": "x", "state": "y"}),
        404,
        "NOT_FOUND",
    )


async def test_an_unreachable_provider_is_503(database_url: str, storage_dir: Path) -> None:
    settings = make_settings(
        database_url,
        storage_dir,
        OIDC_PROVIDERS={
            "gone": {"issuer": "http://127.0.0.1:9", "client_id": "c", "client_secret": "s"}
        },
    )
    async with lifespan_client(create_app(settings)) as client:
        response = await client.get("/api/auth/sso/gone/login")
    assert_error(response, 503)


def test_provider_settings_are_checked(database_url: str, storage_dir: Path) -> None:
    provider = {
        "issuer": "http://idp.example",
        "client_id": "c",
        "client_secret": "s3cret-value",
        "allowed_email_domains": ["@Hospital.Example"],
    }
    settings = make_settings(database_url, storage_dir, OIDC_PROVIDERS={"h": provider})
    assert settings.OIDC_PROVIDERS["h"].allowed_email_domains == ["hospital.example"]
    assert "OIDC_PROVIDERS['h'].issuer is not an https address" in settings.production_problems()
    assert "s3cret-value" not in repr(settings)
    with pytest.raises(ValueError, match="openid"):
        make_settings(
            database_url, storage_dir, OIDC_PROVIDERS={"h": {**provider, "scopes": ["email"]}}
        )
    with pytest.raises(ValueError):
        make_settings(
            database_url,
            storage_dir,
            OIDC_PROVIDERS={"h": {**provider, "default_role": "admin"}},
        )
