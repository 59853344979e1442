"""Item banks: create, versions, checks naming the field or row, import, access, audit."""

from __future__ import annotations

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import AuditEvent
from tests.item_banks.conftest import URL, World, bank_body, create_bank, field_errors, grm_items


async def _events(db_session: AsyncSession, bank_id: str) -> list[AuditEvent]:
    rows = await db_session.scalars(
        select(AuditEvent)
        .where(AuditEvent.entity_type == "item_bank", AuditEvent.entity_id == bank_id)
        .order_by(AuditEvent.sequence)
    )
    return list(rows.all())


async def test_create_read_and_version(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    created = await create_bank(client, world)
    assert created["version"] == 1
    assert created["rules"] == {
        "target_se": 0.45,
        "min_items": 2,
        "max_items": 8,
        "randomesque": 2,
        "domain_targets": {},
    }
    assert created["items"][0]["model"] == "grm"
    assert created["items"][0]["text"]["fr"] == "Question 0 (fr)"
    bank_id = created["id"]

    items = grm_items(4)
    items.append({"id": "yesno", "a": 1.1, "b": 0.3, "text": {"en": "Tired today?"}})
    response = await client.post(
        f"{URL}/{bank_id}/versions",
        headers=world.researcher,
        json={"items": items, "reason": "recalibrated"},
    )
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["version"] == 2 and len(second["items"]) == 5
    assert second["items"][-1] == {
        "id": "yesno",
        "a": 1.1,
        "b": [0.3],
        "model": "2pl",
        "domain": None,
        "text": {"en": "Tired today?"},
        "options": {},
    }
    assert second["rules"] == created["rules"]  # kept from version 1

    first = (await client.get(f"{URL}/{bank_id}?version=1", headers=world.coordinator)).json()
    assert len(first["items"]) == 12 and first["current_version"] == 2
    listed = await client.get(f"{URL}?study_id={world.study_id}", headers=world.coordinator)
    assert [bank["version"] for bank in listed.json()["data"]] == [2]

    events = await _events(db_session, bank_id)
    assert [event.action for event in events] == ["item_bank.create", "item_bank.update"]
    assert events[1].before is not None and events[1].before["n_items"] == 12
    assert events[1].after is not None and events[1].after["n_items"] == 5
    assert events[1].reason == "recalibrated"

    assert (await client.delete(f"{URL}/{bank_id}", headers=world.researcher)).status_code == 204
    listed = await client.get(f"{URL}?study_id={world.study_id}", headers=world.researcher)
    assert listed.json()["data"] == []
    again = await client.post(
        f"{URL}/{bank_id}/versions", headers=world.researcher, json={"items": items}
    )
    assert again.status_code == 409


async def test_checks_name_every_field(client: httpx.AsyncClient, world: World) -> None:
    items = grm_items(5)
    items[0]["a"] = 0
    items[1]["b"] = [0.5, 0.2, 0.9, 1.0]
    items[2]["id"] = "item00"
    items[3]["options"] = {"en": ["No", "Yes"]}
    items[4]["text"] = {}
    response = await client.post(
        URL,
        headers=world.researcher,
        json=bank_body(world.study_id, items=items, rules={"min_items": 9, "max_items": 3}),
    )
    assert field_errors(response) == [
        "items.0.a",
        "items.1.b[1]",
        "items.2.id",
        "items.3.options.en",
        "items.4.text",
        "rules.max_items",
    ]
    response = await client.post(
        URL, headers=world.researcher, json=bank_body(world.study_id, items=[])
    )
    assert field_errors(response) == ["items"]


async def test_import_csv_and_json(client: httpx.AsyncClient, world: World) -> None:
    good = (
        "id,a,b1,b2,b3,domain,text_en,options_en\n"
        "q1,1.5,-1,0,1,mood,Felt sad,Never|Sometimes|Often|Always\n"
        "q2,2.0,-0.5,0.5,,mood,Felt low,Never|Sometimes|Always\n"
    )
    response = await client.post(
        f"{URL}/import",
        headers=world.researcher,
        data={"study_id": str(world.study_id), "name": "From CSV"},
        files={"file": ("bank.csv", good.encode(), "text/csv")},
    )
    assert response.status_code == 201, response.text
    bank = response.json()
    assert bank["name"] == "From CSV"
    assert [item["b"] for item in bank["items"]] == [[-1.0, 0.0, 1.0], [-0.5, 0.5]]
    assert bank["rules"]["target_se"] == 0.3  # defaults

    bad = "id,a,b1,b2,text_en\nq1,1.5,-1,0,Felt sad\nq2,-2,0.5,0.1,Felt low\nq1,abc,0,1,\n"
    response = await client.post(
        f"{URL}/import",
        headers=world.researcher,
        data={"bank_id": bank["id"]},
        files={"file": ("bank.csv", bad.encode(), "text/csv")},
    )
    assert field_errors(response) == [
        "rows.3.a",
        "rows.3.b2",
        "rows.4.id",
        "rows.4.a",
        "rows.4.text",
    ]

    document = (
        b'{"rules": {"max_items": 3}, "items": [{"id": "z", "a": 1, "b": 0, "text": {"en": "Z"}}]}'
    )
    response = await client.post(
        f"{URL}/import",
        headers=world.researcher,
        data={"bank_id": bank["id"]},
        files={"file": ("bank.json", document, "application/json")},
    )
    assert response.status_code == 201, response.text
    assert response.json()["version"] == 2 and response.json()["rules"]["max_items"] == 3

    response = await client.post(
        f"{URL}/import",
        headers=world.researcher,
        data={"study_id": str(world.study_id)},
        files={"file": ("bank.json", b"{not json", "application/json")},
    )
    assert field_errors(response) == ["file"]


async def test_members_read_researchers_write_outsiders_see_nothing(
    client: httpx.AsyncClient, world: World
) -> None:
    bank_id = (await create_bank(client, world))["id"]
    response = await client.post(
        URL, headers=world.coordinator, json=bank_body(world.study_id, name="Other")
    )
    assert response.status_code == 403
    assert response.json()["error"]["details"]["required"] == "configure_study"
    assert (await client.get(f"{URL}/{bank_id}", headers=world.coordinator)).status_code == 200
    response = await client.post(
        f"{URL}/{bank_id}/cat/next", headers=world.coordinator, json={"responses": []}
    )
    assert response.status_code == 200
    for method, path in (
        ("GET", f"{URL}/{bank_id}"),
        ("POST", f"{URL}/{bank_id}/score"),
        ("DELETE", f"{URL}/{bank_id}"),
    ):
        response = await client.request(
            method,
            path,
            headers=world.outsider,
            json={"responses": []} if method == "POST" else None,
        )
        assert response.status_code == 404, (method, path)


async def test_csv_headers_that_cannot_work_are_refused(
    client: httpx.AsyncClient, world: World
) -> None:
    for text in ("name,a,b\nx,1,0\n", "id,a,b,b1\nx,1,0,1\n", "id,a,domain\nx,1,m\n", "id,a,b\n"):
        response = await client.post(
            f"{URL}/import",
            headers=world.researcher,
            data={"study_id": str(world.study_id), "name": "Bad"},
            files={"file": ("bank.csv", text.encode(), "text/csv")},
        )
        assert field_errors(response) in (["rows.1"], ["rows"]), text
    response = await client.post(
        f"{URL}/import",
        headers=world.researcher,
        data={"name": "No study"},
        files={"file": ("bank.csv", b"id,a,b,text_en\nx,1,0,X\n", "text/csv")},
    )
    assert field_errors(response) == ["study_id"]
