"""Adaptive tests offline: the manifest's bank snapshot, a device running the test on it, the
upload rescored by the server to the online result, the device-estimate flag, bad uploads."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.models.assessment import TaskResult
from app.models.audit import AuditEvent
from app.models.item_bank import CatSession, CatSessionStep
from app.scoring import DEVICE_ESTIMATE_TOLERANCE, device_estimate_flag
from app.scoring.irt import CatRules, Estimate, Item, cat_step
from app.services.item_banks.cat import cat_seed
from tests.conftest import run_sync_items_in_test_session
from tests.factories import simple_rt_trials
from tests.item_banks.conftest import URL, CatWorld, grm_items, new_assessment_session, respond
from tests.item_banks.test_sessions import run_online


@pytest.fixture
def app(app: FastAPI, db_session: AsyncSession) -> FastAPI:
    run_sync_items_in_test_session(app, db_session)
    return app


def run_device(snapshot: dict[str, Any]) -> tuple[list[tuple[str, int]], Estimate]:
    """What a device does with the manifest's snapshot: the documented algorithm and seed."""
    items = [Item(i["id"], i["a"], tuple(i["b"]), i["domain"]) for i in snapshot["items"]]
    rules = CatRules(**snapshot["rules"])
    pairs: list[tuple[Item, int]] = []
    while True:
        seed = cat_seed(uuid.UUID(snapshot["id"]), snapshot["version"], [i.id for i, _ in pairs])
        step = cat_step(items, pairs, rules, random.Random(seed))
        if step.finished:
            return [(item.id, response) for item, response in pairs], step.estimate
        assert step.next_item is not None
        pairs.append((step.next_item, respond(step.next_item.id)))


def cat_item(
    cat_world: CatWorld,
    session_id: str,
    responses: list[tuple[str, int]],
    estimate: Estimate,
    **overrides: Any,
) -> dict[str, Any]:
    ended = utcnow() - timedelta(days=1)
    item: dict[str, Any] = {
        "type": "cat",
        "id": f"cat-{uuid.uuid4().hex[:12]}",
        "cat_session_id": str(uuid.uuid4()),
        "session_id": session_id,
        "bank_id": cat_world.bank_id,
        "bank_version": 1,
        "responses": [{"item_id": i, "response": r} for i, r in responses],
        "theta": estimate.theta,
        "se": estimate.se,
        "started_at": (ended - timedelta(minutes=4)).isoformat(),
        "ended_at": ended.isoformat(),
    }
    item.update(overrides)
    return item


async def _sync(
    client: httpx.AsyncClient, headers: dict[str, str], *items: dict[str, Any]
) -> list[dict[str, Any]]:
    response = await client.post("/api/sync", headers=headers, json={"items": list(items)})
    assert response.status_code == 200, response.text
    answers: list[dict[str, Any]] = response.json()["items"]
    return answers


async def _counts(db_session: AsyncSession) -> tuple[int, ...]:
    values = []
    for model in (CatSession, CatSessionStep, TaskResult, AuditEvent):
        values.append(int(await db_session.scalar(select(func.count()).select_from(model)) or 0))
    return tuple(values)


async def _snapshot(client: httpx.AsyncClient, cat_world: CatWorld) -> dict[str, Any]:
    manifest = await client.get("/api/sync/manifest", headers=cat_world.participant)
    assert manifest.status_code == 200, manifest.text
    [bank] = manifest.json()["item_banks"]
    snapshot: dict[str, Any] = bank
    return snapshot


async def test_manifest_carries_the_study_banks(
    client: httpx.AsyncClient, cat_world: CatWorld
) -> None:
    archived = await client.post(
        URL,
        headers=cat_world.researcher,
        json={"study_id": str(cat_world.study_id), "name": "Old", "items": grm_items(2)},
    )
    deleted = await client.delete(f"{URL}/{archived.json()['id']}", headers=cat_world.researcher)
    assert deleted.status_code == 204
    first = await client.get("/api/sync/manifest", headers=cat_world.participant)
    [bank] = first.json()["item_banks"]
    assert bank["id"] == cat_world.bank_id and bank["version"] == 1
    assert bank["task"] == f"item-bank-{cat_world.bank_id}"
    assert bank["scorer_version"] == "irt-eap-61/1"
    assert bank["rules"] == {
        "target_se": 0.45,
        "min_items": 2,
        "max_items": 8,
        "randomesque": 2,
        "domain_targets": {},
    }
    stored = grm_items()
    assert [(i["id"], i["a"], i["b"], i["domain"]) for i in bank["items"]] == [
        (i["id"], i["a"], i["b"], i["domain"]) for i in stored
    ]
    assert bank["items"][0]["options"]["en"][4] == "Always"

    changed = await client.post(
        f"{URL}/{cat_world.bank_id}/versions",
        headers=cat_world.researcher,
        json={"items": grm_items(5)},
    )
    assert changed.status_code == 200
    second = await client.get("/api/sync/manifest", headers=cat_world.participant)
    assert second.json()["item_banks"][0]["version"] == 2
    assert second.headers["etag"] != first.headers["etag"]


async def test_offline_test_is_rescored_to_the_online_result(
    client: httpx.AsyncClient, db_session: AsyncSession, cat_world: CatWorld
) -> None:
    online = await run_online(client, cat_world, cat_world.participant, cat_world.session_id)
    snapshot = await _snapshot(client, cat_world)
    responses, device = run_device(snapshot)
    # The device, following the documented seed, gives the items the server gave.
    assert responses == [(s["item_id"], s["response"]) for s in online["steps"]]

    # A session run offline and its adaptive test, in one batch.
    session_id = str(uuid.uuid4())
    session_item = {
        "type": "session",
        "id": "session-1",
        "session_id": session_id,
        "battery_id": str(cat_world.battery_id),
        "battery_version": 1,
        "started_at": (utcnow() - timedelta(days=1, minutes=10)).isoformat(),
        "ended_at": (utcnow() - timedelta(days=1)).isoformat(),
        "status": "completed",
        "trials": simple_rt_trials(),
    }
    upload = cat_item(cat_world, session_id, responses, device)
    answers = await _sync(client, cat_world.participant, session_item, upload)
    assert [a["status"] for a in answers] == ["accepted", "accepted"], answers
    result = answers[1]["result"]
    assert result["status"] == "finished" and result["flags"] == []
    assert abs(result["theta"] - online["theta"]) <= 1e-9
    assert abs(result["se"] - online["se"]) <= 1e-9
    assert result["n_items"] == online["n_items"]
    assert result["stop_reason"] == online["stop_reason"]

    stored = await client.get(
        f"{cat_world.sessions_url()}/{upload['cat_session_id']}", headers=cat_world.coordinator
    )
    body = stored.json()
    assert body["origin"] == "offline" and body["session_id"] == session_id
    assert (body["device_theta"], body["device_se"]) == (device.theta, device.se)
    # Every step is stored with the server's estimate after it, as online.
    assert [(s["item_id"], s["response"], s["theta"], s["se"]) for s in body["steps"]] == [
        (s["item_id"], s["response"], s["theta"], s["se"]) for s in online["steps"]
    ]
    offline_result = await db_session.get(TaskResult, uuid.UUID(body["task_result_id"]))
    online_result = await db_session.get(TaskResult, uuid.UUID(online["task_result_id"]))
    assert offline_result is not None and online_result is not None
    assert offline_result.session_id == uuid.UUID(session_id)
    assert offline_result.scores == online_result.scores
    assert offline_result.scorer_version == "irt-eap-61/1"
    assert offline_result.client_summary == {"theta": device.theta, "se": device.se}

    # The same batch again changes nothing and answers the same.
    before = await _counts(db_session)
    again = await _sync(client, cat_world.participant, session_item, upload)
    assert [a["status"] for a in again] == ["duplicate", "duplicate"]
    assert again[1]["result"] == answers[1]["result"]
    assert await _counts(db_session) == before


async def test_flag_when_the_device_estimate_differs(
    client: httpx.AsyncClient, db_session: AsyncSession, cat_world: CatWorld
) -> None:
    responses, device = run_device(await _snapshot(client, cat_world))
    off = Estimate(theta=device.theta + 0.01, se=device.se)
    upload = cat_item(cat_world, cat_world.session_id, responses, off)
    [answer] = await _sync(client, cat_world.participant, upload)
    assert answer["status"] == "accepted", answer
    [flag] = answer["result"]["flags"]
    task = f"item-bank-{cat_world.bank_id}"
    assert flag["code"] == "DEVICE_ESTIMATE_DIFFERS" and flag["task"] == task
    evidence = flag["evidence"]
    assert evidence["device_theta"] == off.theta and evidence["server_theta"] == device.theta
    assert evidence["device_se"] == off.se and evidence["server_se"] == device.se
    assert evidence["tolerance"] == DEVICE_ESTIMATE_TOLERANCE
    result = await db_session.scalar(select(TaskResult).where(TaskResult.task == task))
    assert result is not None and [f["code"] for f in result.flags] == ["DEVICE_ESTIMATE_DIFFERS"]
    # The server's estimate is what is stored, not the device's.
    assert result.scores["theta"] == device.theta
    session_read = await client.get(
        f"/api/session/{cat_world.session_id}", headers=cat_world.coordinator
    )
    assert session_read.json()["tasks"][0]["flags"][0]["code"] == "DEVICE_ESTIMATE_DIFFERS"


def test_device_estimate_tolerance() -> None:
    def flagged(theta: float, se: float) -> bool:
        return (
            device_estimate_flag(
                "t", server_theta=0.5, server_se=0.3, device_theta=theta, device_se=se
            )
            is not None
        )

    assert not flagged(0.5, 0.3)
    assert not flagged(0.5 + 0.9 * DEVICE_ESTIMATE_TOLERANCE, 0.3 - 0.9 * DEVICE_ESTIMATE_TOLERANCE)
    assert flagged(0.5 + 1.1 * DEVICE_ESTIMATE_TOLERANCE, 0.3)
    assert flagged(0.5, 0.3 - 1.1 * DEVICE_ESTIMATE_TOLERANCE)


async def test_bad_uploads_are_refused_and_change_nothing(
    client: httpx.AsyncClient, db_session: AsyncSession, cat_world: CatWorld
) -> None:
    responses, device = run_device(await _snapshot(client, cat_world))
    first_item = responses[0][0]
    good = cat_item(cat_world, cat_world.session_id, responses, device)

    def with_responses(pairs: list[tuple[str, int]]) -> dict[str, Any]:
        return cat_item(cat_world, cat_world.session_id, pairs, device)

    too_many = [(item["id"], 0) for item in grm_items()[:9]]  # max_items is 8
    cases: list[tuple[dict[str, Any], str, str | None]] = [
        (with_responses([("nope", 0), *responses[1:]]), "VALIDATION_ERROR", "responses.0.item_id"),
        (
            with_responses([(first_item, 5), *responses[1:]]),
            "VALIDATION_ERROR",
            "responses.0.response",
        ),
        (with_responses([responses[0], responses[0]]), "VALIDATION_ERROR", "responses.1.item_id"),
        (with_responses(too_many), "VALIDATION_ERROR", "responses"),
        ({**good, "responses": []}, "VALIDATION_ERROR", "cat.responses"),
        ({**good, "bank_id": str(uuid.uuid4())}, "NOT_FOUND", None),
        ({**good, "bank_version": 9}, "NOT_FOUND", None),
        ({**good, "bank_version": 2**63}, "VALIDATION_ERROR", "cat.bank_version"),
        ({**good, "session_id": str(uuid.uuid4())}, "NOT_FOUND", None),
        ({**good, "theta": "NaN"}, "VALIDATION_ERROR", "cat.theta"),
    ]
    before = await _counts(db_session)
    answers = await _sync(client, cat_world.participant, *(case for case, _, _ in cases))
    for answer, (_, code, field) in zip(answers, cases, strict=True):
        assert answer["status"] == "rejected", answer
        assert answer["error"]["code"] == code, answer
        if field is not None:
            fields = [e["field"] for e in answer["error"]["details"]["errors"]]
            assert field in fields, answer
    # Another participant cannot upload into this participant's session.
    [foreign] = await _sync(client, cat_world.other_participant, good)
    assert foreign["status"] == "rejected" and foreign["error"]["code"] == "NOT_FOUND"
    assert await _counts(db_session) == before

    [stored] = await _sync(client, cat_world.participant, good)
    assert stored["status"] == "accepted"
    before = await _counts(db_session)
    changed = {**good, "responses": good["responses"][:-1]}
    second_test = {**good, "cat_session_id": str(uuid.uuid4())}
    answers = await _sync(client, cat_world.participant, changed, second_test)
    assert [a["status"] for a in answers] == ["conflict", "conflict"], answers
    assert await _counts(db_session) == before

    # An online start on the same bank and assessment session is refused as well.
    refused = await client.post(
        cat_world.sessions_url(),
        headers=cat_world.participant,
        json={"session_id": cat_world.session_id},
    )
    assert refused.status_code == 409
    assert await new_assessment_session(client, cat_world)
