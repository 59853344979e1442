"""Listing batteries, and DELETE as archiving."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.study import Study, StudyStatus
from tests.batteries.conftest import URL, World, audit_events, battery_body, create_battery


async def test_list_by_study_with_current_content(client: httpx.AsyncClient, world: World) -> None:
    first = await create_battery(client, world, name="Bravo")
    second = await create_battery(client, world, name="Alpha")
    renamed = await client.patch(
        f"{URL}/{first['id']}", headers=world.researcher, json={"name": "Charlie"}
    )
    assert renamed.status_code == 200
    response = await client.get(
        URL, headers=world.researcher, params={"study_id": str(world.study_id)}
    )
    assert response.status_code == 200
    body = response.json()
    assert [b["id"] for b in body["data"]] == [second["id"], first["id"]]
    assert body["data"][0] == second
    assert body["data"][1] == renamed.json()
    assert body["data"][1]["version"] == 2
    assert body["pagination"]["total"] == 2
    descending = await client.get(
        URL,
        headers=world.researcher,
        params={"study_id": str(world.study_id), "sort": "name", "order": "desc"},
    )
    assert [b["name"] for b in descending.json()["data"]] == ["Charlie", "Alpha"]
    paged = await client.get(
        URL, headers=world.researcher, params={"study_id": str(world.study_id), "per_page": 1}
    )
    assert paged.json()["pagination"]["total_pages"] == 2
    assert len(paged.json()["data"]) == 1
    bad_sort = await client.get(URL, headers=world.researcher, params={"sort": "tasks"})
    assert bad_sort.status_code == 422


async def test_list_without_study_shows_only_visible_studies(
    client: httpx.AsyncClient, world: World
) -> None:
    mine = await create_battery(client, world)
    theirs = await client.post(
        URL, headers=world.outsider, json=battery_body(world.other_study_id, name="Other")
    )
    assert theirs.status_code == 201
    for headers, expected in (
        (world.researcher, {mine["id"]}),
        (world.read_only, {mine["id"]}),
        (world.outsider, {theirs.json()["id"]}),
    ):
        listed = await client.get(URL, headers=headers)
        assert {b["id"] for b in listed.json()["data"]} == expected
    # Admins see every study's batteries (other tests may have committed some: filter by study).
    for study_id, battery_id in (
        (world.study_id, mine["id"]),
        (world.other_study_id, theirs.json()["id"]),
    ):
        listed = await client.get(URL, headers=world.admin, params={"study_id": str(study_id)})
        assert [b["id"] for b in listed.json()["data"]] == [battery_id]


async def test_archive_hides_from_list_but_keeps_reading(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    kept = await create_battery(client, world, name="Kept")
    archived = await create_battery(client, world, name="Archived")
    archived_id = archived["id"]
    response = await client.delete(
        f"{URL}/{archived_id}", headers=world.researcher, params={"reason": "replaced"}
    )
    assert response.status_code == 204
    assert response.content == b""

    params = {"study_id": str(world.study_id)}
    listed = await client.get(URL, headers=world.researcher, params=params)
    assert [b["id"] for b in listed.json()["data"]] == [kept["id"]]
    everything = await client.get(
        URL, headers=world.researcher, params={**params, "include_archived": "true"}
    )
    assert {b["id"]: b["archived"] for b in everything.json()["data"]} == {
        kept["id"]: False,
        archived_id: True,
    }
    fetched = await client.get(f"{URL}/{archived_id}", headers=world.researcher)
    assert fetched.status_code == 200
    assert fetched.json() == {
        **archived,
        "archived": True,
        "updated_at": fetched.json()["updated_at"],
    }
    version = await client.get(f"{URL}/{archived_id}/versions/1", headers=world.researcher)
    assert version.status_code == 200

    (event,) = await audit_events(db_session, archived_id, "battery.archive")
    assert event.reason == "replaced"
    assert event.before == {"archived": False, "current_version": 1}
    assert event.after == {"archived": True, "current_version": 1}

    again = await client.delete(f"{URL}/{archived_id}", headers=world.researcher)
    assert again.status_code == 204
    assert len(await audit_events(db_session, archived_id, "battery.archive")) == 1

    change = await client.patch(
        f"{URL}/{archived_id}", headers=world.researcher, json={"name": "Revived"}
    )
    assert change.status_code == 409
    assert change.json()["error"]["code"] == "CONFLICT"
    assert await audit_events(db_session, archived_id, "battery.update") == []


async def test_archived_study_refuses_battery_writes(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    battery_id = (await create_battery(client, world))["id"]
    study = await db_session.get(Study, world.study_id)
    assert study is not None
    study.status = StudyStatus.ARCHIVED
    await db_session.commit()
    create = await client.post(URL, headers=world.researcher, json=battery_body(world.study_id))
    change = await client.patch(
        f"{URL}/{battery_id}", headers=world.researcher, json={"name": "New"}
    )
    archive = await client.delete(f"{URL}/{battery_id}", headers=world.researcher)
    assert [create.status_code, change.status_code, archive.status_code] == [409, 409, 409]
    assert (await client.get(f"{URL}/{battery_id}", headers=world.researcher)).status_code == 200
    assert [e.action for e in await audit_events(db_session, study_id=world.study_id)] == [
        "battery.create"
    ]
