"""NUL characters and non-finite numbers never reach the database and never make a 500.

The sweep is generated from the OpenAPI document: every operation, every string, number and
free-form JSON field of its body (one level of nesting and the items of arrays), and every query
parameter gets a NUL or an Infinity, sent by a signed-in admin and by a participant.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.middleware.unstorable_values import json_body_problems
from app.config import Settings
from app.models.assessment import TaskResult
from app.models.study import Study
from app.models.user import UserRole
from tests import factories
from tests.assessments.conftest import World, build_world
from tests.factories import simple_rt_trials

NUL = "a\u0000b"
# A bare Infinity in JSON text: what a careless client serialiser writes for float('inf').
INFINITY = object()


def _encode(value: Any) -> bytes:
    marker = "__INFINITY_MARKER__"

    def default(item: object) -> str:
        if item is INFINITY:
            return marker
        raise TypeError(type(item))

    return json.dumps(value, default=default).replace(f'"{marker}"', "Infinity").encode()


class OpenApi:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[1]
            schema = self.document["components"]["schemas"][name]
        if "allOf" in schema and len(schema["allOf"]) == 1:
            return self.resolve(schema["allOf"][0])
        return schema

    def kinds(self, schema: dict[str, Any]) -> set[str]:
        schema = self.resolve(schema)
        options = schema.get("anyOf") or schema.get("oneOf")
        if options:
            return set().union(*(self.kinds(option) for option in options))
        if "type" in schema:
            kind = schema["type"]
            return set(kind) if isinstance(kind, list) else {kind}
        return {"any"}

    def example(self, schema: dict[str, Any], depth: int = 0) -> Any:
        """A plausible value; the sweep only needs the request to reach the field's check."""
        schema = self.resolve(schema)
        if "default" in schema:
            return schema["default"]
        if "enum" in schema:
            return schema["enum"][0]
        options = schema.get("anyOf") or schema.get("oneOf")
        if options:
            concrete = [o for o in options if self.resolve(o).get("type") != "null"]
            return self.example((concrete or options)[0], depth)
        kind = next(iter(self.kinds(schema)))
        if kind == "object" and depth < 3:
            return {
                name: self.example(prop, depth + 1)
                for name, prop in schema.get("properties", {}).items()
                if name in schema.get("required", [])
            }
        if kind == "array" and depth < 3:
            return [self.example(schema.get("items", {}), depth + 1)]
        if kind == "string":
            fmt = schema.get("format")
            if fmt == "uuid":
                return str(uuid.uuid4())
            if fmt == "date-time":
                return "2026-01-01T00:00:00+00:00"
            if fmt == "date":
                return "2026-01-01"
            if fmt == "email":
                return "someone@example.org"
            return "x" * max(1, schema.get("minLength", 1))
        if kind in ("integer", "number"):
            return schema.get("minimum", 1)
        if kind == "boolean":
            return True
        return {}

    def poisoned_bodies(self, schema: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        """(field path, body) with one field of the body holding a NUL or an Infinity."""
        schema = self.resolve(schema)
        base = self.example(schema)
        if not isinstance(base, dict):
            return
        for name, prop in schema.get("properties", {}).items():
            for label, value in self._poisons(prop):
                yield f"{name} {label}", {**base, name: value}
            inner = self.resolve(prop)
            if "array" in self.kinds(prop):
                item_schema = self.resolve(inner.get("items", {}))
                for child, child_schema in item_schema.get("properties", {}).items():
                    item = self.example(item_schema)
                    item = item if isinstance(item, dict) else {}
                    for label, value in self._poisons(child_schema):
                        yield f"{name}[].{child} {label}", {**base, name: [{**item, child: value}]}
            if "object" in self.kinds(prop):
                for child, child_schema in inner.get("properties", {}).items():
                    nested = self.example(inner)
                    nested = nested if isinstance(nested, dict) else {}
                    for label, value in self._poisons(child_schema):
                        yield f"{name}.{child} {label}", {**base, name: {**nested, child: value}}

    def _poisons(self, schema: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        kinds = self.kinds(schema)
        if "string" in kinds:
            yield "NUL", NUL
        if kinds & {"number", "integer"}:
            yield "Infinity", INFINITY
        if kinds & {"object", "any"}:
            yield "NUL key", {NUL: 1}
            yield "NUL value", {"k": NUL}
            yield "Infinity value", {"k": INFINITY}
        if kinds & {"array", "any"}:
            yield "NUL item", [NUL]


def _fill_ids(path: str) -> str:
    out = []
    for part in path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            out.append(
                {"module_id": "simple-rt", "task": "simple-rt", "version": "1"}.get(
                    name, str(uuid.uuid4())
                )
            )
        else:
            out.append(part)
    return "/".join(out)


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield method.upper(), path, operation


def _assert_not_a_server_error(response: httpx.Response, what: str) -> None:
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    if response.headers.get("content-type", "").startswith("application/json"):
        body = response.json()
        items = body.get("items") if isinstance(body, dict) else None
        for item in items or []:
            error = item.get("error") or {}
            assert error.get("code") != "INTERNAL_ERROR", f"{what}: {item}"


@pytest.fixture
async def world(client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings) -> World:
    return await build_world(client, db_session, settings)


async def test_sweep_every_operation_with_nul_and_infinity(
    app: FastAPI, client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    openapi = OpenApi(app.openapi())
    sent = 0
    for method, path, operation in _operations(openapi.document):
        url = _fill_ids(path)
        for headers in (admin.headers, world.participant):
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query" and "string" in openapi.kinds(parameter["schema"]):
                    response = await client.request(
                        method, url, params={parameter["name"]: NUL}, headers=headers
                    )
                    _assert_not_a_server_error(response, f"{method} {path}?{parameter['name']}")
                    assert response.status_code == 422
                    sent += 1
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                for field, body in openapi.poisoned_bodies(content["application/json"]["schema"]):
                    response = await client.request(
                        method,
                        url,
                        content=_encode(body),
                        headers={**headers, "Content-Type": "application/json"},
                    )
                    _assert_not_a_server_error(response, f"{method} {path} {field}")
                    sent += 1
            if "application/x-www-form-urlencoded" in content:
                form = content["application/x-www-form-urlencoded"]["schema"]
                for name in openapi.resolve(form).get("properties", {}):
                    response = await client.request(method, url, data={name: NUL}, headers=headers)
                    _assert_not_a_server_error(response, f"{method} {path} form {name}")
                    assert response.status_code == 422
                    sent += 1
    assert sent > 300, f"the sweep sent only {sent} requests: is the document complete?"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/auth/login", {"email": "a\u0000b@x.org", "password": "whatever-123456"}),
        ("/api/auth/participant", {"study_code": NUL, "participant_id": "P1", "access_code": "x"}),
        ("/api/auth/participant", {"study_code": "S", "participant_id": NUL, "access_code": "x"}),
    ],
)
async def test_nul_before_sign_in_is_422(
    client: httpx.AsyncClient, path: str, body: dict[str, str]
) -> None:
    response = await client.post(path, json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"]["errors"][0]["type"] == "nul_character"


async def _start(client: httpx.AsyncClient, world: World) -> str:
    response = await client.post(
        "/api/session/start",
        json={"participant_id": str(world.participant_id), "battery_id": str(world.battery_id)},
        headers=world.participant,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["session_id"])


@pytest.mark.parametrize(
    "poison",
    [
        "stimulus NUL",
        "condition NUL",
        "extra field NUL",
        "summary NUL",
        "summary Infinity",
        "response NaN",
        "extra field Infinity",
        "device_info NaN",
    ],
)
async def test_submit_with_an_unstorable_value_is_422_and_stores_nothing(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World, poison: str
) -> None:
    session_id = await _start(client, world)
    trials: list[dict[str, Any]] = simple_rt_trials(5)
    body: dict[str, Any] = {"session_id": session_id, "task_summaries": {}, "trials": trials}
    text_override: tuple[str, str] | None = None
    if poison == "stimulus NUL":
        trials[2]["stimulus"] = NUL
    elif poison == "condition NUL":
        trials[2]["condition"] = NUL
    elif poison == "extra field NUL":
        trials[2]["note"] = NUL
    elif poison == "summary NUL":
        body["task_summaries"] = {"simple-rt": {"m": NUL}}
    elif poison == "summary Infinity":
        body["task_summaries"] = {"simple-rt": {"m": "__X__"}}
        text_override = ('"__X__"', "Infinity")
    elif poison == "response NaN":
        trials[1]["response"] = "__X__"
        text_override = ('"__X__"', "NaN")
    elif poison == "extra field Infinity":
        trials[1]["pressure"] = "__X__"
        text_override = ('"__X__"', "-Infinity")
    elif poison == "device_info NaN":
        body["device_info"] = {"fps": "__X__"}
        text_override = ('"__X__"', "NaN")
    text = json.dumps(body)
    if text_override:
        text = text.replace(*text_override)
    response = await client.post(
        "/api/submit",
        content=text.encode(),
        headers={
            **world.participant,
            "X-Session-ID": session_id,
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    stored = await db_session.scalar(
        select(func.count())
        .select_from(TaskResult)
        .where(TaskResult.session_id == uuid.UUID(session_id))
    )
    assert stored == 0


async def test_staff_writes_and_queries_with_nul_are_422(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    before = await db_session.scalar(select(func.count()).select_from(Study))
    response = await client.post(
        "/api/studies", json={"code": "NUL-1", "name": NUL}, headers=admin.headers
    )
    assert response.status_code == 422
    response = await client.post(
        "/api/studies",
        json={"code": "NUL-2", "name": "ok", "config": {NUL: 1}},
        headers=admin.headers,
    )
    assert response.status_code == 422
    assert await db_session.scalar(select(func.count()).select_from(Study)) == before
    for url in ("/api/participants?q=a%00b", "/api/audit?action=a%00b"):
        response = await client.get(url, headers=admin.headers)
        assert response.status_code == 422, url
        assert response.json()["error"]["details"]["errors"][0]["field"] == "query"


async def test_a_sync_batch_rejects_only_the_item_with_an_unstorable_value(
    client: httpx.AsyncClient, world: World
) -> None:
    def session_item(stimulus: str) -> dict[str, Any]:
        trials = simple_rt_trials(3)
        trials[0]["stimulus"] = stimulus
        return {
            "type": "session",
            "id": str(uuid.uuid4()),
            "session_id": str(uuid.uuid4()),
            "battery_id": str(world.battery_id),
            "battery_version": 1,
            "started_at": "2026-01-01T10:00:00+00:00",
            "status": "completed",
            "tasks": [{"task": "simple-rt", "summary": {}, "trials": trials}],
        }

    body = {"items": [session_item("dot"), session_item(NUL), session_item("dot")]}
    text = json.dumps(body)
    response = await client.post(
        "/api/sync",
        content=text.encode(),
        headers={**world.participant, "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    statuses = [item["status"] for item in response.json()["items"]]
    assert statuses[1] == "rejected"
    assert response.json()["items"][1]["error"]["code"] == "VALIDATION_ERROR"
    assert response.json()["items"][1]["error"]["details"]["errors"][0]["type"] == "nul_character"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a": "plain", "b": 1.5}', []),
        (b'{"a": "NaN as text is fine"}', []),
        (b'{"a": NaN}', ["non_finite_number"]),
        (b'{"a": [1, -Infinity]}', ["non_finite_number"]),
        (b'{"a": {"b": "x\\u0000"}}', ["nul_character"]),
        (b'{"a\\u0000": 1}', ["nul_character"]),
        (b'{"a": "x\\\\u0000"}', []),  # an escaped backslash, then the letters u0000
        (b'{"a": NaN', []),  # not JSON at all: left to the route's own 422
    ],
)
def test_json_body_problems(body: bytes, expected: list[str]) -> None:
    assert [problem["type"] for problem in json_body_problems(body)] == expected


@pytest.mark.parametrize(
    "value", [0, 1767225600, 1.5, True, "0", "1767225600", "2026-01-01T10:00:00"]
)
async def test_a_date_time_is_an_iso_string_with_an_offset(
    client: httpx.AsyncClient, world: World, value: object
) -> None:
    response = await client.post(
        "/api/session/start",
        json={
            "participant_id": str(world.participant_id),
            "battery_id": str(world.battery_id),
            "client_time": value,
        },
        headers=world.participant,
    )
    assert response.status_code == 422, response.text
    listed = await client.get(
        "/api/sessions",
        params={"start_date": str(value)},
        headers=world.coordinator,
    )
    assert listed.status_code == 422, listed.text


async def test_an_iso_date_time_with_an_offset_is_accepted(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await client.post(
        "/api/session/start",
        json={
            "participant_id": str(world.participant_id),
            "battery_id": str(world.battery_id),
            "client_time": "2026-01-01T10:00:00+01:00",
        },
        headers=world.participant,
    )
    assert response.status_code == 201, response.text
