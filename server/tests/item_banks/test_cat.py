"""Adaptive testing through the API: next item, stopping, scoring against the pure maths."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest

from app.scoring.irt import Item, category_probabilities, eap
from tests.item_banks.conftest import URL, World, create_bank, field_errors


def _as_item(stored: dict[str, Any]) -> Item:
    return Item(stored["id"], stored["a"], tuple(stored["b"]), stored["domain"])


async def _run(
    client: httpx.AsyncClient, world: World, bank_id: str, theta: float, seed: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rng = random.Random(seed)
    responses: list[dict[str, Any]] = []
    while True:
        response = await client.post(
            f"{URL}/{bank_id}/cat/next", headers=world.coordinator, json={"responses": responses}
        )
        assert response.status_code == 200, response.text
        step = response.json()
        assert step["n_items"] == len(responses)
        if step["finished"]:
            assert step["next_item"] is None
            return responses, step
        item = _as_item(step["next_item"])
        assert item.id not in {r["item_id"] for r in responses}
        probs = category_probabilities(item, theta)
        draw, category = rng.random(), 0
        while draw > probs[category] and category < len(probs) - 1:
            draw -= probs[category]
            category += 1
        responses.append({"item_id": item.id, "response": category})


@pytest.mark.parametrize("theta", [-1.0, 0.8])
async def test_a_whole_test_runs_and_scores_like_the_maths(
    client: httpx.AsyncClient, world: World, theta: float
) -> None:
    bank = await create_bank(client, world)
    responses, final = await _run(client, world, bank["id"], theta, seed=5)
    assert 2 <= len(responses) <= 8
    assert final["reason"] in {"se_reached", "max_items"}
    if final["reason"] == "se_reached":
        assert final["se"] <= 0.45
    else:
        assert len(responses) == 8
    # Content balancing over two equal domains: never more than one apart.
    domains = [
        next(i for i in bank["items"] if i["id"] == r["item_id"])["domain"] for r in responses
    ]
    assert abs(domains.count("mood") - domains.count("fatigue")) <= 1

    scored = await client.post(
        f"{URL}/{bank['id']}/score", headers=world.coordinator, json={"responses": responses}
    )
    assert scored.status_code == 200, scored.text
    body = scored.json()
    by_id = {i["id"]: _as_item(i) for i in bank["items"]}
    expected = eap([(by_id[r["item_id"]], r["response"]) for r in responses])
    assert body["theta"] == pytest.approx(expected.theta, abs=1e-12)
    assert body["se"] == pytest.approx(expected.se, abs=1e-12)
    assert body["t_score"] == pytest.approx(50 + 10 * expected.theta, abs=1e-9)
    assert body["n_items"] == len(responses)
    assert (body["theta"], body["se"]) == (final["theta"], final["se"])


async def test_the_same_responses_get_the_same_next_item(
    client: httpx.AsyncClient, world: World
) -> None:
    bank = await create_bank(client, world)
    url = f"{URL}/{bank['id']}/cat/next"
    body = {"responses": [{"item_id": "item05", "response": 2}]}
    first = (await client.post(url, headers=world.coordinator, json=body)).json()
    again = (await client.post(url, headers=world.coordinator, json=body)).json()
    assert first["next_item"]["id"] == again["next_item"]["id"]
    assert first["next_item"]["id"] != "item05"


async def test_responses_that_do_not_fit_the_bank_are_named(
    client: httpx.AsyncClient, world: World
) -> None:
    bank = await create_bank(client, world)
    response = await client.post(
        f"{URL}/{bank['id']}/score",
        headers=world.coordinator,
        json={
            "responses": [
                {"item_id": "nope", "response": 0},
                {"item_id": "item01", "response": 5},
                {"item_id": "item02", "response": 1},
                {"item_id": "item02", "response": 1},
            ]
        },
    )
    assert field_errors(response) == [
        "responses.0.item_id",
        "responses.1.response",
        "responses.3.item_id",
    ]
    response = await client.post(
        f"{URL}/{bank['id']}/cat/next",
        headers=world.coordinator,
        json={"responses": [], "version": 7},
    )
    assert response.status_code == 404


async def test_a_version_beyond_any_stored_number_is_refused_not_a_server_error(
    client: httpx.AsyncClient, world: World
) -> None:
    """A version no INTEGER column can hold is a 422 naming it, on every route that takes one
    (it used to reach the database, which refused the query: a 500)."""
    bank = await create_bank(client, world)
    for huge in (2**31, 2**63):
        for route in ("cat/next", "score"):
            response = await client.post(
                f"{URL}/{bank['id']}/{route}",
                headers=world.coordinator,
                json={"responses": [], "version": huge},
            )
            assert field_errors(response) == ["body.version"], (route, huge)
        response = await client.get(
            f"{URL}/{bank['id']}", headers=world.coordinator, params={"version": huge}
        )
        assert field_errors(response) == ["query.version"], huge
    largest = await client.post(
        f"{URL}/{bank['id']}/score",
        headers=world.coordinator,
        json={"responses": [], "version": 2**31 - 1},
    )
    assert largest.status_code == 404
