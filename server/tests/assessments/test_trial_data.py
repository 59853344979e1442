"""What `POST /api/submit` does with trials the scorer cannot use: labels and fields it does not
know are flagged in the receipt and the stored result, numbers sent as strings are refused."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalogue import MODULE_IDS, get_module
from app.models.assessment import TaskResult, Trial
from app.models.study import Study
from app.schemas.assessments import SubmitRequest
from app.services.modules import module_read
from app.services.submissions import _group_by_task, _prepare
from tests import factories
from tests.assessments.conftest import World, start
from tests.assessments.test_sessions_and_submit import count
from tests.factories import simple_rt_trials, submit


async def _session_of(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World, tasks: list[str]
) -> str:
    """A session started by the participant on a new battery of these modules."""
    study = await db_session.get(Study, world.study_id)
    assert study is not None
    battery_id, _ = await factories.battery(db_session, study, tasks, name="Trial data")
    started = await factories.start_session(
        client, world.participant, world.participant_id, battery_id
    )
    assert started.status_code == 201, started.text
    session_id: str = started.json()["session_id"]
    return session_id


async def _started(client: httpx.AsyncClient, world: World) -> str:
    """A session on the world's battery (simple-rt, cpt-go-nogo, digit-span)."""
    started = await start(client, world)
    assert started.status_code == 201, started.text
    session_id: str = started.json()["session_id"]
    return session_id


async def _stored_flags(db_session: AsyncSession, session_id: str, task: str) -> list[Any]:
    flags = await db_session.scalar(
        select(TaskResult.flags).where(
            TaskResult.session_id == uuid.UUID(session_id), TaskResult.task == task
        )
    )
    assert flags is not None
    return list(flags)


async def test_flanker_trials_labelled_c_and_i_are_flagged(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    session_id = await _session_of(client, db_session, world, ["flanker"])
    trials = [
        {
            "task": "flanker",
            "trial_index": i,
            "condition": "C" if i % 2 else "I",
            "rt": 420.5 + i * 3.1,
            "correct": True,
        }
        for i in range(12)
    ]
    response = await submit(client, world.participant, session_id, {"trials": trials})
    assert response.status_code == 201, response.text
    receipt = response.json()
    assert receipt["scores"]["flanker"]["mean_rt_congruent"] is None
    expected = {
        "code": "UNRECOGNISED_CONDITION",
        "task": "flanker",
        "evidence": {
            "field": "condition",
            "labels": ["I", "C"],
            "count": 12,
            "trials": 12,
            "allowed": ["congruent", "incongruent", "neutral"],
        },
    }
    assert expected in receipt["flags"]
    assert expected in await _stored_flags(db_session, session_id, "flanker")
    detail = await client.get(f"/api/session/{session_id}", headers=world.coordinator)
    [task] = detail.json()["tasks"]
    assert expected in task["flags"]


async def test_digit_span_without_direction_is_flagged(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    session_id = await _started(client, world)
    trials = [
        {"task": "digit-span", "trial_index": i, "span_length": 3 + i // 2, "correct": True}
        for i in range(6)
    ]
    response = await submit(client, world.participant, session_id, {"trials": trials})
    assert response.status_code == 201, response.text
    receipt = response.json()
    assert receipt["scores"]["digit-span"]["total_correct"] == 0
    expected = {
        "code": "MISSING_FIELD",
        "task": "digit-span",
        "evidence": {"field": "direction", "count": 6, "trials": 6},
    }
    assert expected in receipt["flags"]
    assert expected in await _stored_flags(db_session, session_id, "digit-span")


@pytest.mark.parametrize(
    ("bad_trial", "field", "error_type"),
    [
        ({"task": "simple-rt", "trial_index": 10, "rt": "350"}, "rt", "float_type"),
        ({"task": "simple-rt", "trial_index": "10", "rt": 350}, "trial_index", "int_type"),
        ({"task": "simple-rt", "trial_index": 10, "correct": "true"}, "correct", "bool_type"),
        ({"task": "simple-rt", "trial_index": 10, "is_practice": 0}, "is_practice", "bool_type"),
        (
            {"task": "digitSpan", "trial_index": 0, "direction": "forward", "span_length": "5"},
            "span_length",
            "int_type",
        ),
        ({"task": "cpt", "trial_index": 0, "condition": "target", "rt": True}, "rt", "float_type"),
    ],
)
async def test_numbers_and_booleans_sent_as_strings_are_refused(
    client: httpx.AsyncClient,
    db_session: AsyncSession,
    world: World,
    bad_trial: dict[str, Any],
    field: str,
    error_type: str,
) -> None:
    session_id = await _started(client, world)
    trials = [*simple_rt_trials(), bad_trial]
    response = await submit(client, world.participant, session_id, {"trials": trials})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"]["errors"] == [
        {
            "field": f"body.trials.10.{field}",
            "message": error["details"]["errors"][0]["message"],
            "type": error_type,
        }
    ]
    session_key = uuid.UUID(session_id)
    assert await count(db_session, TaskResult, session_id=session_key) == 0
    assert await count(db_session, Trial, session_id=session_key) == 0


async def test_a_field_only_one_scorer_reads_as_a_number_is_free_elsewhere(
    client: httpx.AsyncClient, world: World
) -> None:
    session_id = await _started(client, world)
    trials = [{**trial, "level": "easy", "span_length": "n/a"} for trial in simple_rt_trials()]
    response = await submit(client, world.participant, session_id, {"trials": trials})
    assert response.status_code == 201, response.text


async def test_every_published_example_submits_and_scores_without_flags(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    session_id = await _session_of(client, db_session, world, list(MODULE_IDS))
    modules = [module_read(get_module(module_id)) for module_id in MODULE_IDS]
    trials = [trial for module in modules for trial in module.trial_example]
    response = await submit(client, world.participant, session_id, {"trials": trials})
    assert response.status_code == 201, response.text
    receipt = response.json()
    assert receipt["flags"] == []
    assert receipt["tasks_stored"] == sorted(MODULE_IDS)
    for module in modules:
        scores = receipt["scores"][module.id]
        assert all(scores[metric] is not None for metric in module.summary_metrics), module.id


def test_validated_trials_hash_as_they_always_did() -> None:
    """Validation fills every trial's defaults and keeps extra fields as sent, so the canonical
    trials and content hash of a task are the ones stored by earlier versions (pinned here): a
    device resending a submission accepted before an upgrade gets a replay, not a conflict."""
    payload = SubmitRequest.model_validate(
        {
            "session_id": "6f1c1d55-6f7a-4cf0-9d8e-0d3f1c9b2a10",
            "trials": [
                {
                    "task": "digit-span",
                    "trial_index": 0,
                    "rt": 812.5,
                    "correct": True,
                    "response": [3, 1, 4],
                    "stimulus": {"digits": [3, 1, 4]},
                    "direction": "forward",
                    "span_length": 3,
                },
                {
                    "task": "simple-rt",
                    "trial_index": 1,
                    "rt": None,
                    "is_practice": True,
                    "condition": "go",
                    "nested": {"b": 1, "a": [1.5, None]},
                },
                {"task": "simple-rt", "trial_index": 2, "rt": 350},
                {"condition": "x", "task": "simple-rt", "trial_index": 3, "extra_first": "é"},
            ],
        }
    )
    prepared = {task: _prepare(content) for task, content in _group_by_task(payload).items()}
    assert prepared["simple-rt"].documents[1] == {
        "task": "simple-rt",
        "trial_index": 2,
        "rt": 350.0,
        "response": None,
        "stimulus": None,
        "correct": None,
        "is_practice": False,
        "condition": None,
    }
    assert isinstance(prepared["simple-rt"].documents[1]["rt"], float)
    assert {task: found.content_hash for task, found in prepared.items()} == {
        "digit-span": "432e8e82f6e125c15b95fe9de4ea222aedbd6bff1278bd84980dd89bcce96acb",
        "simple-rt": "c45e865cd801fbc15a73ed8fdf63475f192a0e5743644e96ae88ae614946ed4c",
    }
