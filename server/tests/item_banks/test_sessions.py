"""Stored adaptive tests online: start, next item, answer until the rules stop it, every step
stored, the result stored as a task of the assessment session; bad answers change nothing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.assessment import TaskResult
from app.models.audit import AuditEvent
from app.models.item_bank import CatSession, CatSessionStep
from app.scoring.irt import eap
from app.services.item_banks.content import irt_items
from tests.item_banks.conftest import (
    URL,
    CatWorld,
    grm_items,
    new_assessment_session,
    respond,
)


async def _start(
    client: httpx.AsyncClient, cat_world: CatWorld, session_id: str | None = None
) -> dict[str, Any]:
    response = await client.post(
        cat_world.sessions_url(),
        headers=cat_world.participant,
        json={"session_id": session_id or cat_world.session_id},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def run_online(
    client: httpx.AsyncClient, cat_world: CatWorld, headers: dict[str, str], session_id: str
) -> dict[str, Any]:
    """A whole test through the API with `respond`; the finished state."""
    response = await client.post(
        cat_world.sessions_url(), headers=headers, json={"session_id": session_id}
    )
    assert response.status_code == 201, response.text
    url = f"{cat_world.sessions_url()}/{response.json()['id']}"
    for _ in range(50):
        step = await client.get(f"{url}/next", headers=headers)
        assert step.status_code == 200, step.text
        if step.json()["finished"]:
            break
        item_id = step.json()["item"]["id"]
        answered = await client.post(
            f"{url}/answers",
            headers=headers,
            json={"item_id": item_id, "response": respond(item_id)},
        )
        assert answered.status_code == 200, answered.text
    state = await client.get(url, headers=headers)
    assert state.status_code == 200
    body: dict[str, Any] = state.json()
    return body


async def _audit_actions(db_session: AsyncSession, cat_id: str) -> list[str]:
    rows = await db_session.scalars(
        select(AuditEvent.action)
        .where(AuditEvent.entity_type == "cat_session", AuditEvent.entity_id == cat_id)
        .order_by(AuditEvent.sequence)
    )
    return list(rows.all())


async def test_online_test_end_to_end(
    client: httpx.AsyncClient, db_session: AsyncSession, cat_world: CatWorld
) -> None:
    started = await _start(client, cat_world)
    assert started["status"] == "running" and started["bank_version"] == 1
    assert started["session_id"] == cat_world.session_id
    assert started["participant_id"] == str(cat_world.participant_id)
    assert started["n_items"] == 0 and abs(started["theta"]) < 1e-12
    assert abs(started["se"] - 0.9996) < 1e-3
    assert [s["position"] for s in started["steps"]] == [1]
    assert started["next_item_id"] == started["steps"][0]["item_id"]
    url = f"{cat_world.sessions_url()}/{started['id']}"

    # A new version during the test changes nothing for it: the version is pinned at the start.
    new_items = grm_items(3)
    for item in new_items:
        item["id"] = "new-" + item["id"]
    changed = await client.post(
        f"{URL}/{cat_world.bank_id}/versions",
        headers=cat_world.researcher,
        json={"items": new_items},
    )
    assert changed.status_code == 200, changed.text

    answered: list[tuple[str, int]] = []
    states: list[dict[str, Any]] = []
    while True:
        step = await client.get(f"{url}/next", headers=cat_world.participant)
        assert step.status_code == 200, step.text
        body = step.json()
        if body["finished"]:
            assert body["item"] is None and body["position"] is None
            break
        assert body["position"] == len(answered) + 1
        assert body["item"]["text"]["en"].startswith("Question ")
        assert not body["item"]["id"].startswith("new-")
        item_id = body["item"]["id"]
        response = await client.post(
            f"{url}/answers",
            headers=cat_world.participant,
            json={"item_id": item_id, "response": respond(item_id)},
        )
        assert response.status_code == 200, response.text
        answered.append((item_id, respond(item_id)))
        states.append(response.json())
        assert len(answered) <= 8

    final = states[-1]
    assert final["status"] == "finished" and final["next_item_id"] is None
    assert final["stop_reason"] in ("se_reached", "max_items")
    assert final["n_items"] == len(answered) >= 2
    assert final["scorer_version"] == "irt-eap-61/1" and final["flags"] == []
    assert final["task"] == f"item-bank-{cat_world.bank_id}"
    assert [(s["item_id"], s["response"]) for s in final["steps"]] == answered

    # Every step: the estimate after its answer is the EAP of the answers up to it.
    items = {item.id: item for item in irt_items(_stored_items())}
    for index, step in enumerate(final["steps"]):
        expected = eap([(items[i], r) for i, r in answered[: index + 1]])
        assert step["theta"] == expected.theta and step["se"] == expected.se
        assert states[index]["theta"] == expected.theta
    rows = (
        await db_session.scalars(
            select(CatSessionStep)
            .where(CatSessionStep.cat_session_id == uuid.UUID(final["id"]))
            .order_by(CatSessionStep.position)
        )
    ).all()
    assert [(r.item_id, r.response) for r in rows] == answered
    assert all(r.answered_at is not None and r.theta is not None for r in rows)

    # The result is a task of the assessment session, like any other.
    result = await db_session.get(TaskResult, uuid.UUID(final["task_result_id"]))
    assert result is not None
    assert result.session_id == uuid.UUID(cat_world.session_id)
    assert result.scorer == "irt-eap" and result.scorer_version == "irt-eap-61/1"
    assert result.scores == {
        "theta": final["theta"],
        "se": final["se"],
        "t_score": 50 + 10 * final["theta"],
        "n_items": len(answered),
    }
    assert result.n_trials == len(answered) and result.flags == []
    session_read = await client.get(
        f"/api/session/{cat_world.session_id}", headers=cat_world.coordinator
    )
    [task] = session_read.json()["tasks"]
    assert task["task"] == final["task"] and task["scores"] == result.scores

    # The stateless score of the same responses on version 1 agrees to the last bit.
    scored = await client.post(
        f"{URL}/{cat_world.bank_id}/score",
        headers=cat_world.researcher,
        json={
            "version": 1,
            "responses": [{"item_id": i, "response": r} for i, r in answered],
        },
    )
    assert (scored.json()["theta"], scored.json()["se"]) == (final["theta"], final["se"])

    actions = await _audit_actions(db_session, final["id"])
    assert actions == [
        "cat_session.start",
        *["cat_session.answer"] * len(answered),
        "cat_session.finish",
    ]

    # Rescoring the session recomputes the test from its source document: the same values.
    rescored = await client.post(
        f"/api/sessions/{cat_world.session_id}/rescore", headers=cat_world.researcher
    )
    assert rescored.status_code == 200, rescored.text
    await db_session.refresh(result)
    assert result.scores["theta"] == final["theta"] and len(result.previous_scores) == 1


def _stored_items() -> list[dict[str, Any]]:
    """The bank's items as stored (the checked form of `grm_items`)."""
    return [
        {"id": item["id"], "a": item["a"], "b": item["b"], "domain": item["domain"]}
        for item in grm_items()
    ]


async def _snapshot(db_session: AsyncSession, cat_id: str) -> tuple[Any, ...]:
    db_session.expire_all()
    cat = await db_session.get(CatSession, uuid.UUID(cat_id))
    assert cat is not None
    steps = (
        await db_session.execute(
            select(CatSessionStep.position, CatSessionStep.item_id, CatSessionStep.response)
            .where(CatSessionStep.cat_session_id == cat.id)
            .order_by(CatSessionStep.position)
        )
    ).all()
    events = await db_session.scalar(select(func.count()).select_from(AuditEvent))
    results = await db_session.scalar(select(func.count()).select_from(TaskResult))
    return (cat.status, cat.theta, cat.se, cat.n_items, tuple(steps), events, results)


async def test_bad_answers_are_refused_and_change_nothing(
    client: httpx.AsyncClient, db_session: AsyncSession, cat_world: CatWorld
) -> None:
    started = await _start(client, cat_world)
    url = f"{cat_world.sessions_url()}/{started['id']}/answers"
    given = started["next_item_id"]
    other = next(i["id"] for i in grm_items() if i["id"] != given)
    before = await _snapshot(db_session, started["id"])

    async def refused(body: dict[str, Any], status: int, code: str) -> dict[str, Any]:
        response = await client.post(url, headers=cat_world.participant, json=body)
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
        assert await _snapshot(db_session, started["id"]) == before
        error: dict[str, Any] = response.json()["error"]
        return error

    error = await refused({"item_id": "nope", "response": 0}, 422, "VALIDATION_ERROR")
    assert error["details"]["errors"][0]["field"] == "item_id"
    error = await refused({"item_id": other, "response": 0}, 409, "CONFLICT")
    assert error["details"]["expected_item_id"] == given
    error = await refused({"item_id": given, "response": 5}, 422, "VALIDATION_ERROR")
    assert error["details"]["errors"][0]["field"] == "response"
    await refused({"item_id": given, "response": -1}, 422, "VALIDATION_ERROR")
    await refused({"item_id": given}, 422, "VALIDATION_ERROR")

    # Answered once; the same answer again is the same state, another answer a conflict.
    first = await client.post(
        url, headers=cat_world.participant, json={"item_id": given, "response": 1}
    )
    assert first.status_code == 200, first.text
    before = await _snapshot(db_session, started["id"])
    again = await client.post(
        url, headers=cat_world.participant, json={"item_id": given, "response": 1}
    )
    assert again.status_code == 200 and again.json() == first.json()
    assert await _snapshot(db_session, started["id"]) == before
    await refused({"item_id": given, "response": 2}, 409, "CONFLICT")

    # Run to the end; then nothing more is accepted but the repeat of an answer given.
    state = first.json()
    while state["status"] == "running":
        item_id = state["next_item_id"]
        answered = await client.post(
            url, headers=cat_world.participant, json={"item_id": item_id, "response": 4}
        )
        assert answered.status_code == 200, answered.text
        state = answered.json()
    last = state["steps"][-1]
    before = await _snapshot(db_session, started["id"])
    unused = next(
        i["id"] for i in grm_items() if i["id"] not in {s["item_id"] for s in state["steps"]}
    )
    error = await refused({"item_id": unused, "response": 0}, 409, "CONFLICT")
    assert error["details"]["status"] == "finished"
    repeat = await client.post(
        url,
        headers=cat_world.participant,
        json={"item_id": last["item_id"], "response": last["response"]},
    )
    assert repeat.status_code == 200 and repeat.json() == state
    assert await _snapshot(db_session, started["id"]) == before


async def test_who_may_run_and_read_a_test(
    client: httpx.AsyncClient, db_session: AsyncSession, cat_world: CatWorld
) -> None:
    # The coordinator runs one for the participant; read-only staff read it but may not answer.
    session_id = await new_assessment_session(client, cat_world, cat_world.coordinator)
    finished = await run_online(client, cat_world, cat_world.coordinator, session_id)
    assert finished["status"] == "finished"
    url = f"{cat_world.sessions_url()}/{finished['id']}"
    assert (await client.get(url, headers=cat_world.read_only)).status_code == 200
    assert (await client.get(url, headers=cat_world.participant)).status_code == 200
    assert (await client.get(f"{url}/next", headers=cat_world.read_only)).status_code == 403
    assert (await client.get(url, headers=cat_world.other_participant)).status_code == 404

    started = await _start(client, cat_world)
    # One test per bank and assessment session.
    twice = await client.post(
        cat_world.sessions_url(),
        headers=cat_world.participant,
        json={"session_id": cat_world.session_id},
    )
    assert twice.status_code == 409
    assert twice.json()["error"]["details"]["cat_session_id"] == started["id"]
    # Read-only staff cannot start; another participant cannot reach the session.
    refused = await client.post(
        cat_world.sessions_url(), headers=cat_world.read_only, json={"session_id": session_id}
    )
    assert refused.status_code == 403
    refused = await client.post(
        cat_world.sessions_url(),
        headers=cat_world.other_participant,
        json={"session_id": cat_world.session_id},
    )
    assert refused.status_code == 404
    # Under another bank's path the test is not found.
    other_bank = f"{URL}/{uuid.uuid4()}/sessions/{started['id']}"
    assert (await client.get(other_bank, headers=cat_world.participant)).status_code == 404

    # Only in a running assessment session.
    ended = await client.post(
        "/api/session/end",
        headers=cat_world.participant,
        json={"session_id": session_id, "status": "completed"},
    )
    assert ended.status_code == 200, ended.text
    other_bank_id = (
        await client.post(
            URL,
            headers=cat_world.researcher,
            json={
                "study_id": str(cat_world.study_id),
                "name": "Second",
                "items": grm_items(3),
            },
        )
    ).json()["id"]
    late = await client.post(
        f"{URL}/{other_bank_id}/sessions",
        headers=cat_world.participant,
        json={"session_id": session_id},
    )
    assert late.status_code == 409


async def test_erasure_removes_the_participants_tests(
    client: httpx.AsyncClient, db_session: AsyncSession, cat_world: CatWorld
) -> None:
    finished = await run_online(client, cat_world, cat_world.participant, cat_world.session_id)
    assert finished["status"] == "finished"
    running = await new_assessment_session(client, cat_world)
    await _start(client, cat_world, running)
    erased = await client.post(
        f"/api/participants/{cat_world.participant_id}/withdraw",
        headers=cat_world.researcher,
        json={"reason": "participant asked for erasure", "scope": "delete_data"},
    )
    assert erased.status_code == 200, erased.text
    db_session.expire_all()
    tests = await db_session.scalar(
        select(func.count())
        .select_from(CatSession)
        .where(CatSession.participant_id == cat_world.participant_id)
    )
    steps = await db_session.scalar(
        select(func.count())
        .select_from(CatSessionStep)
        .where(CatSessionStep.cat_session_id == uuid.UUID(finished["id"]))
    )
    assert (tests, steps) == (0, 0)
