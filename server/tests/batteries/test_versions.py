"""PATCH writes immutable versions; a PATCH that changes nothing writes none."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalogue import get_module
from app.core.errors import NotFoundError
from app.services import batteries as service
from tests.batteries.conftest import URL, World, audit_events, create_battery, field_errors


async def patch(
    client: httpx.AsyncClient, world: World, battery_id: str, body: dict[str, Any]
) -> httpx.Response:
    return await client.patch(f"{URL}/{battery_id}", headers=world.researcher, json=body)


async def test_patch_creates_version_2_and_keeps_version_1(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    created = await create_battery(client, world)
    battery_id = created["id"]
    response = await patch(
        client,
        world,
        battery_id,
        {
            "tasks": [{"module_id": "simple-rt", "config": {"timeout_ms": 3000}}],
            "reason": "shorter session",
        },
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["version"] == 2
    assert updated["name"] == created["name"]
    assert updated["estimated_minutes"] == created["estimated_minutes"]
    assert updated["tasks"] == [
        {
            "module_id": "simple-rt",
            "config": {**get_module("simple-rt").default_config, "timeout_ms": 3000},
        }
    ]
    assert (await client.get(f"{URL}/{battery_id}", headers=world.researcher)).json() == updated

    first = await client.get(f"{URL}/{battery_id}/versions/1", headers=world.researcher)
    assert first.status_code == 200
    assert first.json()["tasks"] == created["tasks"]
    assert first.json()["is_current"] is False
    second = await client.get(f"{URL}/{battery_id}/versions/2", headers=world.researcher)
    assert second.json()["tasks"] == updated["tasks"]
    assert second.json()["is_current"] is True
    assert second.json()["created_by"] == str(world.researcher_id)

    (update,) = await audit_events(db_session, battery_id, "battery.update")
    assert update.reason == "shorter session"
    assert update.before is not None and update.after is not None
    assert update.before["version"] == 1
    assert update.before["tasks"] == created["tasks"]
    assert update.after["version"] == 2
    assert update.after["tasks"] == updated["tasks"]


async def test_versions_list_newest_first(client: httpx.AsyncClient, world: World) -> None:
    battery_id = (await create_battery(client, world))["id"]
    for name in ("Second", "Third"):
        assert (await patch(client, world, battery_id, {"name": name})).status_code == 200
    listed = await client.get(f"{URL}/{battery_id}/versions", headers=world.researcher)
    assert listed.status_code == 200
    body = listed.json()
    assert [(v["version"], v["name"], v["is_current"]) for v in body["data"]] == [
        (3, "Third", True),
        (2, "Second", False),
        (1, "Baseline", False),
    ]
    assert body["pagination"]["total"] == 3
    ascending = await client.get(
        f"{URL}/{battery_id}/versions", headers=world.researcher, params={"order": "asc"}
    )
    assert [v["version"] for v in ascending.json()["data"]] == [1, 2, 3]
    paged = await client.get(
        f"{URL}/{battery_id}/versions", headers=world.researcher, params={"per_page": 2, "page": 2}
    )
    assert [v["version"] for v in paged.json()["data"]] == [1]
    bad_sort = await client.get(
        f"{URL}/{battery_id}/versions", headers=world.researcher, params={"sort": "tasks"}
    )
    assert bad_sort.status_code == 422


async def test_each_field_change_is_a_version(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    battery_id = (await create_battery(client, world))["id"]
    changes: list[dict[str, Any]] = [
        {"name": "Renamed"},
        {"description": None},
        {"estimated_minutes": 40},
        {"estimated_minutes": None},
        {"description": "Back", "name": "Renamed again"},
    ]
    for expected_version, change in enumerate(changes, start=2):
        response = await patch(client, world, battery_id, change)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["version"] == expected_version
        for key, value in change.items():
            assert body[key] == value
    assert len(await audit_events(db_session, battery_id, "battery.update")) == len(changes)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": "Baseline"},
        {"reason": "nothing really"},
        {"description": "Attention and memory", "estimated_minutes": 25},
        # The same effective configuration, spelt differently: defaults written out, the alias.
        {
            "tasks": [
                {"module_id": "simple-rt", "config": {"n_trials": 30.0, "timeout_ms": 5000}},
                {"module_id": "cpt-go-nogo", "config": get_module("cpt").default_config},
                {"module_id": "digit-span", "config": None},
            ]
        },
    ],
)
async def test_no_op_patch_creates_no_version(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World, body: dict[str, Any]
) -> None:
    created = await create_battery(client, world)
    battery_id = created["id"]
    response = await patch(client, world, battery_id, body)
    assert response.status_code == 200, response.text
    assert response.json() == created
    versions = await client.get(f"{URL}/{battery_id}/versions", headers=world.researcher)
    assert [v["version"] for v in versions.json()["data"]] == [1]
    assert await audit_events(db_session, battery_id, "battery.update") == []


async def test_invalid_patch_changes_nothing(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    created = await create_battery(client, world)
    battery_id = created["id"]
    bad = await patch(
        client,
        world,
        battery_id,
        {
            "name": "New name",
            "tasks": [
                {"module_id": "simple-rt"},
                {"module_id": "n-back", "config": {"trials_per_level": 1}},
            ],
        },
    )
    assert field_errors(bad) == [
        ("tasks.1.config.trials_per_level", "must be greater than or equal to 10")
    ]
    for body, field in (
        ({"tasks": []}, "tasks"),
        ({"tasks": None}, "tasks"),
        ({"name": None}, "name"),
        ({"name": "  "}, "name"),
    ):
        assert [name for name, _ in field_errors(await patch(client, world, battery_id, body))] == [
            field
        ]
    unknown_key = await patch(client, world, battery_id, {"nmae": "typo"})
    assert [name for name, _ in field_errors(unknown_key)] == ["body.nmae"]
    current = await client.get(f"{URL}/{battery_id}", headers=world.researcher)
    assert current.json() == created
    assert await audit_events(db_session, battery_id, "battery.update") == []


async def test_missing_battery_or_version_is_404(client: httpx.AsyncClient, world: World) -> None:
    battery_id = (await create_battery(client, world))["id"]
    missing = uuid.uuid4()
    for method, path in (
        ("GET", f"{URL}/{missing}"),
        ("PATCH", f"{URL}/{missing}"),
        ("DELETE", f"{URL}/{missing}"),
        ("GET", f"{URL}/{missing}/versions"),
        ("GET", f"{URL}/{missing}/versions/1"),
        ("GET", f"{URL}/{battery_id}/versions/2"),
        ("GET", f"{URL}/{battery_id}/versions/0"),
        # Beyond any INTEGER column: no such version either, not a query the database refuses.
        ("GET", f"{URL}/{battery_id}/versions/{2**31}"),
        ("GET", f"{URL}/{battery_id}/versions/{2**63}"),
    ):
        response = await client.request(
            method,
            path,
            headers=world.researcher,
            json={"name": "x"} if method == "PATCH" else None,
        )
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_get_battery_version_for_sessions(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    battery_id = uuid.UUID((await create_battery(client, world))["id"])
    assert (await patch(client, world, str(battery_id), {"name": "V2"})).status_code == 200
    assert (await client.delete(f"{URL}/{battery_id}", headers=world.researcher)).status_code == 204

    battery, current = await service.get_battery_version(db_session, battery_id)
    assert (battery.id, battery.archived, current.version, current.name) == (
        battery_id,
        True,
        2,
        "V2",
    )
    _, first = await service.get_battery_version(db_session, battery_id, 1)
    assert (first.version, first.name) == (1, "Baseline")
    with pytest.raises(NotFoundError):
        await service.get_battery_version(db_session, battery_id, 3)
    with pytest.raises(NotFoundError):
        await service.get_battery_version(db_session, uuid.uuid4())
