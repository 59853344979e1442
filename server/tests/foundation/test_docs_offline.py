"""Swagger UI and ReDoc work without internet access: every asset comes from this server."""

from __future__ import annotations

import re

import httpx
import pytest

# src/href attributes and url(...) references of the HTML pages.
_REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\(\s*["']?([^"')]+)""")


def _references(html: str) -> list[str]:
    return [first or second for first, second in _REFERENCE.findall(html)]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_documentation_pages_reference_no_outside_host(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    references = _references(response.text)
    assert references, "the page loads its scripts from somewhere"
    for reference in references:
        assert reference.startswith("/"), f"{page} loads {reference} from another host"
        assert not reference.startswith("//")
    assert "fonts.googleapis" not in response.text
    assert "cdn.jsdelivr" not in response.text


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_every_asset_of_the_documentation_pages_is_served(
    client: httpx.AsyncClient, page: str
) -> None:
    html = (await client.get(page)).text
    for reference in _references(html):
        asset = await client.get(reference)
        assert asset.status_code == 200, reference
        assert len(asset.content) > 1000, reference


async def test_swagger_ui_calls_no_outside_validator_and_hides_client_fields(
    client: httpx.AsyncClient,
) -> None:
    html = (await client.get("/docs")).text
    assert '"validatorUrl": null' in html
    # The OAuth2 password form asks only for a user name and a password.
    assert 'input[id^="client_id"]' in html
    assert 'input[id^="client_secret"]' in html


async def test_swagger_oauth2_redirect_page_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs/oauth2-redirect")
    assert response.status_code == 200
    assert "oauth2" in response.text.lower()
