"""Safe targets: URLs that resolve to loopback, private, link-local, metadata or other non-public
addresses are refused when a webhook is saved and before each delivery, unless
WEBHOOK_ALLOWED_HOSTS names them; production takes https only."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.config import Environment, Settings
from app.services.webhooks.targets import TargetRefusedError, redacted_url, resolve_target
from tests.conftest import make_settings
from tests.webhooks.conftest import Team

PUBLIC = "http://93.184.215.14/hook"  # a public address: no name to resolve, nothing is sent

REFUSED = [
    "http://127.0.0.1:8080/hook",
    "http://127.1/hook",  # resolves to 127.0.0.1
    "http://localhost/hook",
    "http://10.1.2.3/hook",
    "http://172.16.0.5/hook",
    "http://192.168.1.10/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/hook",
    "http://0.0.0.0/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[fe80::1]/hook",
    "http://[fd00:ec2::254]/hook",
    "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 form of 169.254.169.254
    "http://224.0.0.1/hook",
    "http://no-such-host.invalid/hook",
]


@pytest.fixture
def settings(database_url: str, storage_dir: Path) -> Settings:
    """No allow-list: the deployment's default."""
    return make_settings(database_url, storage_dir)


@pytest.mark.parametrize("url", REFUSED)
async def test_a_non_public_target_is_refused(url: str, settings: Settings) -> None:
    with pytest.raises(TargetRefusedError):
        await resolve_target(url, settings)


async def test_a_public_address_is_accepted(settings: Settings) -> None:
    target = await resolve_target(PUBLIC, settings)
    assert [str(a) for a in target.addresses] == ["93.184.215.14"]


@pytest.mark.parametrize("url", ["ftp://93.184.215.14/x", "http:///nohost", "not a url"])
async def test_what_is_not_an_http_url_is_refused(url: str, settings: Settings) -> None:
    with pytest.raises(TargetRefusedError):
        await resolve_target(url, settings)


async def test_the_allow_list_names_hosts_addresses_and_networks_but_never_metadata(
    database_url: str, storage_dir: Path
) -> None:
    allowing = make_settings(
        database_url,
        storage_dir,
        WEBHOOK_ALLOWED_HOSTS="127.0.0.1,10.0.0.0/8,localhost,169.254.0.0/16",
    )
    for url in ("http://127.0.0.1:9000/", "http://10.9.8.7/", "http://localhost:9000/"):
        await resolve_target(url, allowing)
    for url in ("http://127.0.0.2/", "http://192.168.0.1/", "http://169.254.169.254/"):
        with pytest.raises(TargetRefusedError):
            await resolve_target(url, allowing)


async def test_production_takes_https_only(database_url: str, storage_dir: Path) -> None:
    production = make_settings(database_url, storage_dir, ENVIRONMENT=Environment.PRODUCTION)
    with pytest.raises(TargetRefusedError, match="https"):
        await resolve_target(PUBLIC, production)
    await resolve_target(PUBLIC.replace("http://", "https://"), production)


def test_logs_and_the_audit_trail_keep_the_url_without_credentials_or_query() -> None:
    shown = redacted_url("https://user:pa55@example.org:8443/hook?token=s3cret#part")
    assert shown == "https://example.org:8443/hook?redacted"
    assert "pa55" not in shown and "s3cret" not in shown


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hook",
        "http://10.0.0.8/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9000/hook",
        "http://localhost:9000/hook",
    ],
)
async def test_saving_a_webhook_that_points_inside_is_refused(
    client: httpx.AsyncClient, team: Team, url: str
) -> None:
    answer = await client.post(
        team.webhooks,
        headers=team.researcher,
        json={"url": url, "events": ["session.completed"]},
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"]["reason"] == "URL_NOT_ALLOWED"
    assert error["details"]["errors"][0]["field"] == "url"

    created = await client.post(
        team.webhooks, headers=team.researcher, json={"url": PUBLIC, "events": ["task.accepted"]}
    )
    assert created.status_code == 201
    moved = await client.patch(
        f"{team.webhooks}/{created.json()['id']}", headers=team.researcher, json={"url": url}
    )
    assert moved.status_code == 422
