from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import httpx
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.models.assessment import AssessmentSession, TaskResult, Trial
from app.models.audit import AuditEvent
from app.models.participant import Participant, ParticipantStatus
from tests import factories
from tests.assessments.conftest import World, start
from tests.factories import cpt_trials, simple_rt_trials, submit


async def count(db_session: AsyncSession, model: type[object], **where: object) -> int:
    statement = select(func.count()).select_from(model)
    for name, value in where.items():
        statement = statement.where(getattr(model, name) == value)
    return int(await db_session.scalar(statement) or 0)


async def test_participant_starts_submits_three_tasks_and_gets_scores(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World, storage_dir: Path
) -> None:
    started = await start(client, world, device={"model": "Pixel"})
    assert started.status_code == 201, started.text
    body = started.json()
    session_id = body["session_id"]
    assert body["battery"]["version"] == 1
    assert [t["module_id"] for t in body["battery"]["tasks"]] == [
        "simple-rt",
        "cpt-go-nogo",
        "digit-span",
    ]

    digit_span = [
        {
            "task": "digit-span",
            "trial_index": i,
            "direction": "forward",
            "span_length": 3 + i // 2,
            "correct": i < 5,
        }
        for i in range(8)
    ]
    response = await submit(
        client,
        world.participant,
        session_id,
        {
            "task_summaries": {"simple-rt": {"mean_rt": 331.5}},
            "trials": simple_rt_trials() + cpt_trials() + digit_span,
        },
    )
    assert response.status_code == 201, response.text
    receipt = response.json()
    assert receipt["status"] == "success"
    assert receipt["tasks_stored"] == ["cpt-go-nogo", "digit-span", "simple-rt"]
    assert receipt["trials_stored"] == 38
    assert receipt["scores"]["simple-rt"]["mean_rt"] == 331.5
    assert receipt["scores"]["simple-rt"]["n_trials"] == 10
    assert receipt["scores"]["digit-span"]["max_span_forward"] == 5
    assert receipt["scores"]["cpt-go-nogo"]["hits"] == 4
    assert len(receipt["checksum"]) == 64

    # Trials are queryable rows.
    session_key = uuid.UUID(session_id)
    assert await count(db_session, Trial, task="cpt-go-nogo", session_id=session_key) == 20
    rts = (
        await db_session.scalars(
            select(Trial.rt)
            .where(Trial.task == "simple-rt", Trial.session_id == session_key)
            .order_by(Trial.trial_index)
        )
    ).all()
    assert rts[:2] == [300.0, 307.0]
    extra = await db_session.scalar(
        select(Trial.extra).where(
            Trial.task == "digit-span", Trial.trial_index == 0, Trial.session_id == session_key
        )
    )
    assert extra == {"direction": "forward", "span_length": 3}

    # The source document's hash matches its bytes.
    result = await db_session.scalar(
        select(TaskResult).where(
            TaskResult.task == "simple-rt", TaskResult.session_id == session_key
        )
    )
    assert result is not None
    data = (storage_dir / result.source_path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == result.source_sha256
    assert json.loads(data)["summary"] == {"mean_rt": 331.5}

    detail = await client.get(f"/api/session/{session_id}", headers=world.coordinator)
    assert {t["task"] for t in detail.json()["tasks"]} == {"simple-rt", "cpt-go-nogo", "digit-span"}
    ended = await client.post(
        "/api/session/end",
        headers=world.participant,
        json={"session_id": session_id, "status": "completed"},
    )
    assert ended.status_code == 200 and ended.json()["status"] == "completed"


async def test_replay_conflict_and_partial_submission(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    session_id = (await start(client, world)).json()["session_id"]
    first = await submit(client, world.participant, session_id, {"trials": simple_rt_trials()})
    assert first.status_code == 201
    replay = await submit(client, world.participant, session_id, {"trials": simple_rt_trials()})
    assert replay.status_code == 200
    assert replay.json() == first.json()

    conflict = await submit(
        client, world.participant, session_id, {"trials": simple_rt_trials(base=310)}
    )
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "SUBMISSION_CONFLICT"
    assert conflict.json()["error"]["details"]["tasks"] == ["simple-rt"]
    assert await count(db_session, AuditEvent, action="submission.conflict") == 1
    session_key = uuid.UUID(session_id)
    assert await count(db_session, Trial, task="simple-rt", session_id=session_key) == 10
    stored_rts = (
        await db_session.scalars(
            select(Trial.rt).where(Trial.task == "simple-rt", Trial.session_id == session_key)
        )
    ).all()
    assert min(rt for rt in stored_rts if rt is not None) == 300.0

    # Task by task: a second task in a later request.
    second = await submit(client, world.participant, session_id, {"trials": cpt_trials()})
    assert second.status_code == 201
    assert second.json()["tasks_stored"] == ["cpt-go-nogo"]
    # A request mixing a replay and a new task stores the new one and answers 201.
    mixed = await submit(
        client,
        world.participant,
        session_id,
        {
            "trials": [
                *simple_rt_trials(),
                {
                    "task": "digit-span",
                    "trial_index": 0,
                    "direction": "forward",
                    "span_length": 3,
                    "correct": True,
                },
            ]
        },
    )
    assert mixed.status_code == 201
    assert mixed.json()["tasks_stored"] == ["digit-span", "simple-rt"]
    assert await count(db_session, TaskResult, session_id=session_key) == 3


async def test_submission_validation(client: httpx.AsyncClient, world: World) -> None:
    session_id = (await start(client, world)).json()["session_id"]
    not_in_battery = await submit(
        client,
        world.participant,
        session_id,
        {"trials": [{"task": "flanker", "trial_index": 0, "rt": 400}]},
    )
    assert not_in_battery.status_code == 422
    assert not_in_battery.json()["error"]["details"]["battery_tasks"] == [
        "cpt-go-nogo",
        "digit-span",
        "simple-rt",
    ]
    mismatch = await client.post(
        "/api/submit",
        headers={**world.participant, "X-Session-ID": str(uuid.uuid4())},
        json={"session_id": session_id, "trials": simple_rt_trials()},
    )
    assert mismatch.status_code == 422
    missing_header = await client.post(
        "/api/submit",
        headers=world.participant,
        json={"session_id": session_id, "trials": simple_rt_trials()},
    )
    assert missing_header.status_code == 422
    for bad_trial in (
        {"task": "simple-rt", "trial_index": -1, "rt": 300},
        {"task": "simple-rt", "trial_index": 0, "rt": 1e12},
        {"task": "simple-rt", "trial_index": 0, "rt": "fast"},
        {"task": "../../etc", "trial_index": 0},
    ):
        response = await submit(client, world.participant, session_id, {"trials": [bad_trial]})
        assert response.status_code == 422, bad_trial
    nan = await client.post(
        "/api/submit",
        headers={
            **world.participant,
            "X-Session-ID": session_id,
            "content-type": "application/json",
        },
        content=(
            f'{{"session_id": "{session_id}", '
            '"trials": [{"task": "simple-rt", "trial_index": 0, "rt": NaN}]}'
        ),
    )
    assert nan.status_code == 422
    too_many = await submit(
        client,
        world.participant,
        session_id,
        {"trials": [{"task": "simple-rt", "trial_index": i, "rt": 300} for i in range(20_001)]},
    )
    assert too_many.status_code == 422
    empty = await submit(client, world.participant, session_id, {"trials": []})
    assert empty.status_code == 422


async def test_someone_elses_session_is_404(client: httpx.AsyncClient, world: World) -> None:
    session_id = (await start(client, world)).json()["session_id"]
    response = await submit(
        client, world.other_participant, session_id, {"trials": simple_rt_trials()}
    )
    assert response.status_code == 404
    assert (
        await client.get(f"/api/session/{session_id}", headers=world.other_participant)
    ).status_code == 404
    own_list = await client.get("/api/sessions", headers=world.other_participant)
    assert own_list.json()["pagination"]["total"] == 0


async def test_client_session_id_start_is_idempotent(
    client: httpx.AsyncClient, world: World
) -> None:
    client_id = str(uuid.uuid4())
    first = await start(client, world, session_id=client_id)
    again = await start(client, world, session_id=client_id)
    assert first.status_code == 201 and again.status_code == 200
    assert first.json() == again.json()
    by_code = await client.post(
        "/api/session/start",
        headers=world.coordinator,
        json={"participant_id": "P001", "battery_id": str(world.battery_id)},
    )
    assert by_code.status_code == 201
    assert by_code.json()["participant_id"] == str(world.participant_id)
    listing = await client.get(
        f"/api/sessions?study_id={world.study_id}", headers=world.coordinator
    )
    assert listing.json()["pagination"]["total"] == 2


async def test_withdrawn_participant_cannot_start(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    participant = await db_session.get(Participant, world.participant_id)
    assert participant is not None
    participant.status = ParticipantStatus.WITHDRAWN
    await db_session.commit()
    response = await start(client, world)
    assert response.status_code == 409
    assert response.json()["error"]["details"]["reason"] == "PARTICIPANT_WITHDRAWN"


async def test_rescore_keeps_previous_results(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    session_id = (await start(client, world)).json()["session_id"]
    submitted = await submit(client, world.participant, session_id, {"trials": simple_rt_trials()})
    refused = await client.post(f"/api/sessions/{session_id}/rescore", headers=world.coordinator)
    assert refused.status_code == 403
    rescored = await client.post(f"/api/sessions/{session_id}/rescore", headers=world.researcher)
    assert rescored.status_code == 200, rescored.text
    assert rescored.json()["rescored"] == ["simple-rt"]
    result = await db_session.scalar(
        select(TaskResult).where(TaskResult.session_id == uuid.UUID(session_id))
    )
    assert result is not None
    await db_session.refresh(result)
    assert len(result.previous_scores) == 1
    assert result.previous_scores[0]["scores"] == submitted.json()["scores"]["simple-rt"]
    assert result.scores == submitted.json()["scores"]["simple-rt"]
    detail = await client.get(f"/api/session/{session_id}", headers=world.researcher)
    assert detail.json()["tasks"][0]["rescored"] == 1
    source = await client.get(
        f"/api/sessions/{session_id}/source/simple-rt", headers=world.researcher
    )
    assert source.status_code == 200
    assert source.headers["ETag"] == f'"{result.source_sha256}"'
    assert hashlib.sha256(source.content).hexdigest() == result.source_sha256


async def test_times_without_an_offset_are_refused(client: httpx.AsyncClient, world: World) -> None:
    naive = await start(client, world, started_at="2026-11-20T10:00:00")
    assert naive.status_code == 422
    session_id = (await start(client, world, client_time="2026-11-20T10:00:00+01:00")).json()[
        "session_id"
    ]
    response = await submit(
        client,
        world.participant,
        session_id,
        {"trials": simple_rt_trials(), "client_time": "2026-11-20T10:00:00"},
    )
    assert response.status_code == 422


async def test_sessions_name_participants_by_uuid_or_code_and_refuse_unknown_ones(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    other_study = await factories.study(db_session)
    stranger = await factories.participant(db_session, other_study, "P001")
    stranger_id = stranger.id

    def refused_naming_participant(response: httpx.Response) -> None:
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "VALIDATION_ERROR"
        assert response.json()["error"]["details"]["errors"][0]["field"] == "participant_id"

    # A code of no participant, a random UUID and another study's participant: the same 422.
    for reference in ("P999", str(uuid.uuid4()), str(stranger_id)):
        refused_naming_participant(
            await client.post(
                "/api/session/start",
                headers=world.coordinator,
                json={"participant_id": reference, "battery_id": str(world.battery_id)},
            )
        )
    # A participant token names itself by UUID or code, and nobody else.
    own_code = await start(client, world, participant_id="P001")
    assert own_code.status_code == 201, own_code.text
    refused_naming_participant(await start(client, world, participant_id="P002"))

    await start(client, world, participant_id=str(world.participant_id))
    listing = await client.get(
        "/api/sessions",
        headers=world.coordinator,
        params={"study_id": str(world.study_id), "participant_id": "P001"},
    )
    assert listing.status_code == 200, listing.text
    assert listing.json()["pagination"]["total"] == 2
    assert {s["participant_code"] for s in listing.json()["data"]} == {"P001"}
    by_uuid = await client.get(
        "/api/sessions",
        headers=world.coordinator,
        params={"participant_id": str(world.participant_id)},
    )
    assert by_uuid.json()["pagination"]["total"] == 2
    # A code is read within a study; a participant the caller cannot reach is 422, not [].
    refused_naming_participant(
        await client.get(
            "/api/sessions", headers=world.coordinator, params={"participant_id": "P001"}
        )
    )
    refused_naming_participant(
        await client.get(
            "/api/sessions",
            headers=world.coordinator,
            params={"participant_id": str(stranger_id)},
        )
    )
    refused_naming_participant(
        await client.get(
            "/api/sessions", headers=world.other_participant, params={"participant_id": "P001"}
        )
    )


async def test_a_visit_id_naming_no_visit_of_the_participant_is_refused(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    """Starts with real visits: tests/schedules/test_sessions.py."""
    before = await count(db_session, AssessmentSession)
    for headers in (world.participant, world.coordinator):
        response = await client.post(
            "/api/session/start",
            headers=headers,
            json={
                "participant_id": "P001",
                "battery_id": str(world.battery_id),
                "visit_id": str(uuid.uuid4()),
            },
        )
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert [e["field"] for e in error["details"]["errors"]] == ["visit_id"]
    assert await count(db_session, AssessmentSession) == before
    assert (await start(client, world, visit_id=None)).status_code == 201


async def test_the_sessions_list_embeds_task_results_in_one_query_per_page(
    client: httpx.AsyncClient, db_connection: AsyncConnection, world: World
) -> None:
    for day in range(3):
        session_id = (await start(client, world)).json()["session_id"]
        stored = await submit(
            client,
            world.participant,
            session_id,
            {"trials": simple_rt_trials(base=300.0 + day)},
        )
        assert stored.status_code == 201, stored.text
    await start(client, world)  # a session without data yet: an empty list of tasks

    statements: list[str] = []

    def remember(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    async def listing(**params: str) -> httpx.Response:
        statements.clear()
        event.listen(db_connection.sync_connection, "before_cursor_execute", remember)
        try:
            return await client.get(
                "/api/sessions",
                headers=world.researcher,
                params={"study_id": str(world.study_id), **params},
            )
        finally:
            event.remove(db_connection.sync_connection, "before_cursor_execute", remember)

    plain = await listing()
    assert [item["tasks"] for item in plain.json()["data"]] == [None] * 4

    one = await listing(include="tasks", per_page="1")
    queries_for_one = len(statements)
    page = await listing(include="tasks", per_page="4")
    assert page.status_code == 200, page.text
    # The same number of queries whatever the page holds, one of them for the task results.
    assert len(statements) == queries_for_one
    assert sum("task_results" in statement for statement in statements) == 1
    assert len(one.json()["data"]) == 1

    items = page.json()["data"]
    assert sorted(len(item["tasks"]) for item in items) == [0, 1, 1, 1]
    with_data = next(item for item in items if item["tasks"])
    scored = with_data["tasks"][0]
    assert scored["task"] == "simple-rt"
    assert scored["scorer_version"] and scored["scores"]
    assert isinstance(scored["flags"], list)
    detail = await client.get(f"/api/session/{with_data['id']}", headers=world.researcher)
    assert detail.json()["tasks"] == with_data["tasks"]

    unknown = await client.get(
        "/api/sessions", headers=world.researcher, params={"include": "trials"}
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"]["errors"][0]["field"] == "query.include"
