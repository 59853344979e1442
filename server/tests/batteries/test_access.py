"""Who may read and write batteries (docs/roles.md): 404 outside the study, 403 without the role."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models.participant import Participant
from app.models.study import Study
from tests import factories
from tests.batteries.conftest import URL, World, audit_events, battery_body, create_battery


def reads(battery_id: str, world: World) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("GET", f"{URL}?study_id={world.study_id}", None),
        ("GET", f"{URL}/{battery_id}", None),
        ("GET", f"{URL}/{battery_id}/versions", None),
        ("GET", f"{URL}/{battery_id}/versions/1", None),
    ]


def writes(battery_id: str, world: World) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("POST", URL, battery_body(world.study_id, name="Another")),
        ("PATCH", f"{URL}/{battery_id}", {"name": "Changed"}),
        ("DELETE", f"{URL}/{battery_id}", None),
    ]


async def call(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    headers: dict[str, str] | None,
) -> httpx.Response:
    return await client.request(method, path, headers=headers, json=body)


@pytest.mark.parametrize("role", ["coordinator", "read_only"])
async def test_coordinator_and_read_only_read_but_cannot_write(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World, role: str
) -> None:
    battery_id = (await create_battery(client, world))["id"]
    headers: dict[str, str] = getattr(world, role)
    for method, path, body in reads(battery_id, world):
        response = await call(client, method, path, body, headers)
        assert response.status_code == 200, (method, path, response.text)
    for method, path, body in writes(battery_id, world):
        response = await call(client, method, path, body, headers)
        assert response.status_code == 403, (method, path, response.text)
        error = response.json()["error"]
        assert error["code"] == "FORBIDDEN"
        assert error["details"] == {"required": "configure_study", "study_role": role}
    # A forbidden write is refused before its body is validated.
    invalid = await call(
        client, "POST", URL, battery_body(world.study_id, tasks=[{"module_id": "nope"}]), headers
    )
    assert invalid.status_code == 403
    assert [event.action for event in await audit_events(db_session, study_id=world.study_id)] == [
        "battery.create"
    ]


async def test_researcher_member_and_admin_write(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    for headers in (world.researcher, world.admin):
        created = await client.post(URL, headers=headers, json=battery_body(world.study_id))
        assert created.status_code == 201, created.text
        battery_id = created.json()["id"]
        changed = await client.patch(
            f"{URL}/{battery_id}", headers=headers, json={"name": "Changed"}
        )
        assert changed.status_code == 200
        assert changed.json()["version"] == 2
        assert (await client.delete(f"{URL}/{battery_id}", headers=headers)).status_code == 204
        assert [event.action for event in await audit_events(db_session, battery_id)] == [
            "battery.create",
            "battery.update",
            "battery.archive",
        ]


async def test_another_studys_user_gets_404_on_everything(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    battery_id = (await create_battery(client, world))["id"]
    for method, path, body in reads(battery_id, world) + writes(battery_id, world):
        response = await call(client, method, path, body, world.outsider)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "NOT_FOUND"
    # The outsider cannot tell an existing battery from a missing one.
    existing = await client.get(f"{URL}/{battery_id}", headers=world.outsider)
    assert existing.json()["error"]["message"] == "Battery not found"
    assert [event.action for event in await audit_events(db_session, study_id=world.study_id)] == [
        "battery.create"
    ]


async def test_anonymous_is_401(client: httpx.AsyncClient, world: World) -> None:
    battery_id = (await create_battery(client, world))["id"]
    for method, path, body in reads(battery_id, world) + writes(battery_id, world):
        response = await call(client, method, path, body, None)
        assert response.status_code == 401, (method, path)
        assert response.json()["error"]["code"] == "UNAUTHORIZED"


async def test_participant_token_is_refused(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings, world: World
) -> None:
    battery_id = (await create_battery(client, world))["id"]
    study = await db_session.get(Study, world.study_id)
    assert study is not None
    person: Participant = await factories.participant(db_session, study, "P001")
    headers = await factories.participant_headers(db_session, settings, person)
    for method, path, body in reads(battery_id, world) + writes(battery_id, world):
        response = await call(client, method, path, body, headers)
        # A valid participant token is a signed-in caller without the right (staff routes).
        assert response.status_code == 403, (method, path)
        assert response.json()["error"]["details"] == {"reason": "STAFF_ONLY"}
