"""Concurrent starts and submissions through real, separate database sessions (no shared test
session), on a database of the test's own."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.session import create_sessionmaker
from app.main import create_app
from app.models.assessment import AssessmentSession, TaskResult, Trial
from app.models.audit import AuditEvent
from tests.assessments.conftest import CommittedParticipant, committed_participant
from tests.conftest import lifespan_client
from tests.factories import simple_rt_trials

COPIES = 6
# Generous for a loaded machine: the copies wait only for the first writer's transaction.
WALL_TIME_LIMIT_SECONDS = 10.0


class Api:
    """A client on the application with its own engine, a participant and their token."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        sessions: async_sessionmaker[AsyncSession],
        who: CommittedParticipant,
    ) -> None:
        self.client = client
        self.sessions = sessions
        self.who = who

    async def at_once(self, url: str, bodies: list[dict[str, object]]) -> list[httpx.Response]:
        headers = dict(self.who.headers)
        session_id = bodies[0].get("session_id")
        if url == "/api/submit" and isinstance(session_id, str):
            headers["X-Session-ID"] = session_id
        started = time.perf_counter()
        responses = await asyncio.gather(
            *(self.client.post(url, headers=headers, json=body) for body in bodies)
        )
        elapsed = time.perf_counter() - started
        print(f"\n{len(bodies)} concurrent {url} answered in {elapsed:.2f} s")
        assert elapsed < WALL_TIME_LIMIT_SECONDS
        return list(responses)

    def start_body(self, session_id: str | None = None) -> dict[str, object]:
        body: dict[str, object] = {
            "participant_id": str(self.who.participant_id),
            "battery_id": str(self.who.battery_id),
        }
        if session_id is not None:
            body["session_id"] = session_id
        return body

    async def start(self) -> str:
        started = await self.client.post(
            "/api/session/start",
            headers=self.who.headers,
            json=self.start_body(),
        )
        assert started.status_code == 201, started.text
        session_id: str = started.json()["session_id"]
        return session_id

    async def stored(self, session_id: str) -> tuple[int, int, int]:
        """Sessions with this id, their task results and trials."""
        key = uuid.UUID(session_id)
        async with self.sessions() as db:
            counts = [
                await db.scalar(select(func.count()).select_from(model).where(column == key))
                for model, column in (
                    (AssessmentSession, AssessmentSession.id),
                    (TaskResult, TaskResult.session_id),
                    (Trial, Trial.session_id),
                )
            ]
        return (counts[0] or 0, counts[1] or 0, counts[2] or 0)

    async def audit_actions(self, session_id: str) -> Counter[str]:
        async with self.sessions() as db:
            actions = await db.scalars(
                select(AuditEvent.action).where(AuditEvent.entity_id == session_id)
            )
            return Counter(actions)


@pytest.fixture
async def api(isolated_settings: Settings) -> AsyncIterator[Api]:
    app = create_app(isolated_settings)
    async with lifespan_client(app) as client:
        sessions = create_sessionmaker(app.state.engine)
        async with sessions() as db:
            who = await committed_participant(db, isolated_settings, ["simple-rt"])
        yield Api(client, sessions, who)


async def test_concurrent_identical_submissions_store_exactly_once(api: Api) -> None:
    session_id = await api.start()
    body: dict[str, object] = {"session_id": session_id, "trials": simple_rt_trials(50)}
    responses = await api.at_once("/api/submit", [body] * COPIES)
    assert sorted(r.status_code for r in responses) == [200] * (COPIES - 1) + [201]
    texts = {r.text for r in responses}
    assert len(texts) == 1, texts
    assert await api.stored(session_id) == (1, 1, 50)


async def test_concurrent_differing_submissions_store_one_and_refuse_the_others(
    api: Api,
) -> None:
    session_id = await api.start()
    bodies: list[dict[str, object]] = [
        {"session_id": session_id, "trials": simple_rt_trials(50, base=300.0 + copy)}
        for copy in range(COPIES)
    ]
    responses = await api.at_once("/api/submit", bodies)
    assert sorted(r.status_code for r in responses) == [201] + [409] * (COPIES - 1)
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {
        "SUBMISSION_CONFLICT"
    }
    assert await api.stored(session_id) == (1, 1, 50)
    actions = await api.audit_actions(session_id)
    assert actions["submission.accepted"] == 1
    assert actions["submission.conflict"] == COPIES - 1


async def test_concurrent_identical_starts_answer_one_session(api: Api) -> None:
    """A client session id repeated at once: one start stores (201), the others answer that
    session as a repeated start does (200)."""
    session_id = str(uuid.uuid4())
    body = api.start_body(session_id)
    responses = await api.at_once("/api/session/start", [body] * COPIES)
    assert sorted(r.status_code for r in responses) == [200] * (COPIES - 1) + [201]
    assert {r.json()["session_id"] for r in responses} == {session_id}
    assert len({r.json()["started_at"] for r in responses}) == 1
    assert await api.stored(session_id) == (1, 0, 0)
    assert await api.audit_actions(session_id) == {"session.start": 1}
