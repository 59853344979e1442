"""Creating a battery: version 1 with effective configurations, and every problem reported."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalogue import MODULE_IDS, get_module
from app.models.battery import Battery, BatteryVersion
from tests.batteries.conftest import (
    URL,
    World,
    audit_events,
    battery_body,
    create_battery,
    field_errors,
)


async def battery_count(db_session: AsyncSession, study_id: uuid.UUID) -> int:
    statement = select(func.count()).select_from(Battery).where(Battery.study_id == study_id)
    return int(await db_session.scalar(statement) or 0)


async def test_create_stores_version_1_with_defaults_merged(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    response = await client.post(
        URL, headers=world.researcher, json=battery_body(world.study_id, name="  Baseline  ")
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["version"] == 1
    assert body["name"] == "Baseline"
    assert body["study_id"] == str(world.study_id)
    assert body["archived"] is False
    assert body["estimated_minutes"] == 25
    assert body["version_created_by"] == str(world.researcher_id)
    assert [task["module_id"] for task in body["tasks"]] == [
        "simple-rt",
        "cpt-go-nogo",  # the alias is stored as the catalogue id
        "digit-span",
    ]
    assert body["tasks"][0]["config"] == {**get_module("simple-rt").default_config, "n_trials": 30}
    assert body["tasks"][1]["config"] == get_module("cpt-go-nogo").default_config
    assert body["tasks"][2]["config"] == get_module("digit-span").default_config

    fetched = await client.get(f"{URL}/{body['id']}", headers=world.researcher)
    assert fetched.json() == body
    rows = (
        await db_session.scalars(
            select(BatteryVersion).where(BatteryVersion.battery_id == uuid.UUID(body["id"]))
        )
    ).all()
    assert [(row.version, row.tasks) for row in rows] == [(1, body["tasks"])]


async def test_create_writes_one_audit_event(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    created = await create_battery(client, world)
    (event,) = await audit_events(db_session, created["id"])
    assert event.action == "battery.create"
    assert event.category == "config"
    assert event.study_id == world.study_id
    assert event.actor_id == str(world.researcher_id)
    assert event.before is None
    assert event.after == {
        "version": 1,
        "name": "Baseline",
        "description": "Attention and memory",
        "tasks": created["tasks"],
        "estimated_minutes": 25,
    }


async def test_optional_fields_and_null_config(client: httpx.AsyncClient, world: World) -> None:
    response = await client.post(
        URL,
        headers=world.researcher,
        json={
            "study_id": str(world.study_id),
            "name": "Minimal",
            "tasks": [{"module_id": "mfis", "config": None}],
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["description"] is None
    assert body["estimated_minutes"] is None
    assert body["tasks"] == [{"module_id": "mfis", "config": get_module("mfis").default_config}]


async def test_unknown_module_names_the_task_index(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    tasks = [{"module_id": "simple-rt"}, {"module_id": "simple_rt"}]
    response = await client.post(
        URL, headers=world.researcher, json=battery_body(world.study_id, tasks=tasks)
    )
    assert field_errors(response) == [
        ("tasks.1.module_id", "Unknown module 'simple_rt' (did you mean 'simple-rt'?)")
    ]
    assert await battery_count(db_session, world.study_id) == 0
    assert await audit_events(db_session, study_id=world.study_id) == []


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"timeout_ms": "5000"}, [("tasks.1.config.timeout_ms", "must be an integer")]),
        (
            {"n_trials": 1},
            [("tasks.1.config.n_trials", "must be greater than or equal to 5")],
        ),
        (
            {"timeout_ms": 60_000},
            [("tasks.1.config.timeout_ms", "must be less than or equal to 10000")],
        ),
        (
            {"timeout": 3000},
            [("tasks.1.config.timeout", "unknown parameter (did you mean 'timeout_ms'?)")],
        ),
    ],
)
async def test_bad_parameter_names_task_index_and_field(
    client: httpx.AsyncClient,
    world: World,
    config: dict[str, Any],
    expected: list[tuple[str, str]],
) -> None:
    tasks = [{"module_id": "digit-span"}, {"module_id": "simple-rt", "config": config}]
    response = await client.post(
        URL, headers=world.researcher, json=battery_body(world.study_id, tasks=tasks)
    )
    assert field_errors(response) == expected


async def test_every_problem_is_listed(client: httpx.AsyncClient, world: World) -> None:
    tasks = [
        {"module_id": "simple-rt", "config": {"n_trials": "many", "timeout_ms": 10}},
        {"module_id": "nope"},
        {"module_id": "n-back", "config": {"levels": [1, 4], "target_frequency": 0.9}},
        {"module_id": "cpt-go-nogo"},
        {"module_id": "cpt"},
    ]
    response = await client.post(
        URL,
        headers=world.researcher,
        json=battery_body(world.study_id, name="   ", tasks=tasks),
    )
    fields = [field for field, _ in field_errors(response)]
    assert fields == [
        "name",
        "tasks.0.config.n_trials",
        "tasks.0.config.timeout_ms",
        "tasks.1.module_id",
        "tasks.2.config.levels.1",
        "tasks.2.config.target_frequency",
        "tasks.4.module_id",
    ]


async def test_same_module_twice_is_refused(client: httpx.AsyncClient, world: World) -> None:
    tasks = [{"module_id": "cpt-go-nogo"}, {"module_id": "simple-rt"}, {"module_id": "cpt"}]
    response = await client.post(
        URL, headers=world.researcher, json=battery_body(world.study_id, tasks=tasks)
    )
    assert field_errors(response) == [
        (
            "tasks.2.module_id",
            "Module 'cpt-go-nogo' is already task 0; a battery runs each module once",
        )
    ]


async def test_cross_field_rule_is_reported(client: httpx.AsyncClient, world: World) -> None:
    tasks = [{"module_id": "simple-rt", "config": {"isi_min_ms": 2000, "isi_max_ms": 1000}}]
    response = await client.post(
        URL, headers=world.researcher, json=battery_body(world.study_id, tasks=tasks)
    )
    errors = field_errors(response)
    assert errors
    assert all(field.startswith("tasks.0.config.isi_") for field, _ in errors)


async def test_config_must_be_an_object(client: httpx.AsyncClient, world: World) -> None:
    tasks = [{"module_id": "simple-rt", "config": [1, 2]}]
    response = await client.post(
        URL, headers=world.researcher, json=battery_body(world.study_id, tasks=tasks)
    )
    assert [field for field, _ in field_errors(response)] == ["body.tasks.0.config"]


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ([], "A battery needs at least one task"),
        ([{"module_id": "simple-rt"}] * 51, "A battery has at most 50 tasks"),
    ],
)
async def test_task_count_is_bounded(
    client: httpx.AsyncClient,
    db_session: AsyncSession,
    world: World,
    tasks: list[dict[str, Any]],
    message: str,
) -> None:
    response = await client.post(
        URL, headers=world.researcher, json=battery_body(world.study_id, tasks=tasks)
    )
    assert field_errors(response) == [("tasks", message)]
    assert await battery_count(db_session, world.study_id) == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (
            {"tasks": [{"module_id": "simple-rt", "configuration": {}}]},
            "body.tasks.0.configuration",
        ),
        ({"estimated_minute": 10}, "body.estimated_minute"),
        ({"estimated_minutes": 0}, "body.estimated_minutes"),
        ({"name": ""}, "body.name"),
        ({"tasks": None}, "body.tasks"),
    ],
)
async def test_malformed_body_is_422(
    client: httpx.AsyncClient, world: World, overrides: dict[str, Any], field: str
) -> None:
    response = await client.post(
        URL, headers=world.researcher, json=battery_body(world.study_id, **overrides)
    )
    assert field in [name for name, _ in field_errors(response)]


async def test_unknown_study_is_404(client: httpx.AsyncClient, world: World) -> None:
    response = await client.post(URL, headers=world.researcher, json=battery_body(uuid.uuid4()))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_every_module_can_be_added_with_its_defaults(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await client.post(
        URL,
        headers=world.researcher,
        json=battery_body(
            world.study_id, tasks=[{"module_id": module_id} for module_id in MODULE_IDS]
        ),
    )
    assert response.status_code == 201, response.text
    assert [task["module_id"] for task in response.json()["tasks"]] == list(MODULE_IDS)
