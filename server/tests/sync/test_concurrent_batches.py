"""The same new batch sent several times at once, as a device retrying while its first upload still
runs: real requests on connections of their own, on a database of the test's own."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.db.session import create_sessionmaker
from app.main import create_app
from app.models.assessment import AssessmentSession, TaskResult, Trial
from app.models.audit import AuditEvent
from app.models.consent import ConsentRecord
from tests.assessments.conftest import committed_participant
from tests.conftest import lifespan_client
from tests.factories import task_trials
from tests.sync.conftest import consent_item, require_consent

TRIALS_PER_TASK = {"simple-rt": 100, "choice-rt": 300, "flanker": 500}
COPIES = 5
# Generous for a loaded machine; docs/sync.md gives the figure of a quiet run.
WALL_TIME_LIMIT_SECONDS = 10.0


def offline_session(battery_id: uuid.UUID, session_id: uuid.UUID, seed: int) -> dict[str, Any]:
    started = utcnow() - timedelta(days=2, hours=seed)
    return {
        "type": "session",
        "id": f"item-{uuid.uuid4().hex[:12]}",
        "session_id": str(session_id),
        "battery_id": str(battery_id),
        "battery_version": 1,
        "started_at": started.isoformat(),
        "ended_at": (started + timedelta(minutes=20)).isoformat(),
        "status": "completed",
        "client_time": utcnow().isoformat(),
        "trials": [
            trial
            for task, count in TRIALS_PER_TASK.items()
            for trial in task_trials(task, count, seed=seed)
        ],
    }


async def send_at_once(
    client: httpx.AsyncClient, headers: dict[str, str], batches: list[dict[str, Any]]
) -> tuple[list[httpx.Response], float]:
    started = time.perf_counter()
    responses = await asyncio.gather(
        *(client.post("/api/sync", headers=headers, json=batch) for batch in batches)
    )
    return list(responses), time.perf_counter() - started


async def audit_actions(db: AsyncSession, session_ids: list[uuid.UUID]) -> Counter[str]:
    actions = await db.scalars(
        select(AuditEvent.action).where(AuditEvent.entity_id.in_([str(s) for s in session_ids]))
    )
    return Counter(actions)


async def test_concurrent_copies_of_a_new_batch_store_it_once(
    isolated_settings: Settings,
) -> None:
    # Fewer pooled connections than copies: a request that held its own connection while its
    # items waited for another would exhaust the pool and wait out its timeout (503).
    settings = isolated_settings.model_copy(
        update={"DATABASE_POOL_SIZE": COPIES - 1, "DATABASE_MAX_OVERFLOW": 0}
    )
    app = create_app(settings)
    async with lifespan_client(app) as client:
        sessions = create_sessionmaker(app.state.engine)
        async with sessions() as db:
            who = await committed_participant(db, settings, list(TRIALS_PER_TASK))
        session_ids = [uuid.uuid4(), uuid.uuid4()]
        batch = {
            "items": [
                offline_session(who.battery_id, session_id, seed)
                for seed, session_id in enumerate(session_ids, start=1)
            ]
        }
        responses, elapsed = await send_at_once(client, who.headers, [batch] * COPIES)

        print(f"\n{COPIES} concurrent copies of a two-session batch answered in {elapsed:.2f} s")
        assert [r.status_code for r in responses] == [200] * COPIES, [r.text for r in responses]
        for index in range(len(session_ids)):
            answers = [r.json()["items"][index] for r in responses]
            assert sorted(a["status"] for a in answers) == ["accepted"] + ["duplicate"] * (
                COPIES - 1
            ), [a["error"] for a in answers]
            # A duplicate answers what the first writer stored, receipt included.
            assert len({str(a["result"]) for a in answers}) == 1
            assert answers[0]["result"]["status"] == "completed"
        async with sessions() as db:
            stored_sessions = await db.scalar(
                select(func.count())
                .select_from(AssessmentSession)
                .where(AssessmentSession.participant_id == who.participant_id)
            )
            results = await db.scalar(
                select(func.count())
                .select_from(TaskResult)
                .where(TaskResult.session_id.in_(session_ids))
            )
            trials = await db.scalar(
                select(func.count()).select_from(Trial).where(Trial.session_id.in_(session_ids))
            )
            actions = await audit_actions(db, session_ids)
    assert (stored_sessions, results, trials) == (
        2,
        2 * len(TRIALS_PER_TASK),
        2 * sum(TRIALS_PER_TASK.values()),
    )
    assert actions == {"session.start": 2, "submission.accepted": 2, "session.end": 2}
    assert elapsed < WALL_TIME_LIMIT_SECONDS


async def test_concurrent_batches_with_other_data_for_one_session_conflict(
    isolated_settings: Settings,
) -> None:
    """Copies that differ in their trials: one is stored, every other one is a conflict."""
    app = create_app(isolated_settings)
    async with lifespan_client(app) as client:
        sessions = create_sessionmaker(app.state.engine)
        async with sessions() as db:
            who = await committed_participant(db, isolated_settings, list(TRIALS_PER_TASK))
        session_id = uuid.uuid4()
        batches = [
            {"items": [offline_session(who.battery_id, session_id, seed)]} for seed in range(COPIES)
        ]
        responses, _ = await send_at_once(client, who.headers, batches)

        answers = [r.json()["items"][0] for r in responses]
        assert sorted(a["status"] for a in answers) == ["accepted"] + ["conflict"] * (COPIES - 1)
        assert {a["error"]["code"] for a in answers if a["status"] == "conflict"} == {
            "SUBMISSION_CONFLICT"
        }
        winner = next(i for i, a in enumerate(answers) if a["status"] == "accepted")
        async with sessions() as db:
            stored = await db.scalar(
                select(Trial.rt).where(
                    Trial.session_id == session_id,
                    Trial.task == "flanker",
                    Trial.trial_index == 1,
                )
            )
            actions = await audit_actions(db, [session_id])
    sent = batches[winner]["items"][0]["trials"]
    assert stored == next(t["rt"] for t in sent if t["task"] == "flanker" and t["trial_index"] == 1)
    assert actions == {
        "session.start": 1,
        "submission.accepted": 1,
        "session.end": 1,
        "submission.conflict": COPIES - 1,
    }


async def test_concurrent_copies_of_a_signature_record_it_once(isolated_settings: Settings) -> None:
    """The signature opens the consent gate for the session behind it in every copy."""
    app = create_app(isolated_settings)
    async with lifespan_client(app) as client:
        sessions = create_sessionmaker(app.state.engine)
        async with sessions() as db:
            who = await committed_participant(db, isolated_settings, list(TRIALS_PER_TASK))
            form_id = await require_consent(db, who.study_id)
        session_id = uuid.uuid4()
        batch = {"items": [consent_item(form_id), offline_session(who.battery_id, session_id, 1)]}
        responses, _ = await send_at_once(client, who.headers, [batch] * COPIES)

        for index in range(2):
            answers = [r.json()["items"][index] for r in responses]
            assert sorted(a["status"] for a in answers) == ["accepted"] + ["duplicate"] * (
                COPIES - 1
            ), [a["error"] for a in answers]
            assert len({str(a["result"]) for a in answers}) == 1
        async with sessions() as db:
            records = await db.scalar(
                select(func.count())
                .select_from(ConsentRecord)
                .where(ConsentRecord.participant_id == who.participant_id)
            )
    assert records == 1
