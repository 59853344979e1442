"""The outbox end to end, through the API only: a researcher subscribes a receiver to every event
of a study; a participant is enrolled, signs consent and completes a session with its own token,
then is withdrawn. A real Celery worker, woken by the API after each commit, delivers every event
to a local HTTP receiver, which verifies every signature with the snippet of docs/webhooks.md."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.session import create_engine, create_sessionmaker
from app.main import create_app
from app.models.outbox import DeliveryStatus, OutboxDelivery
from app.models.study import MemberRole
from tests import factories
from tests.conftest import lifespan_client
from tests.webhooks.processes import Workers, running_workers, worker_settings
from tests.webhooks.receiver import Receiver, running

EVERY_EVENT = [
    "participant.enrolled",
    "consent.signed",
    "task.accepted",
    "session.completed",
    "participant.withdrawn",
]


@pytest.fixture
def workers() -> Iterator[Workers]:
    yield from running_workers()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from running(Receiver())


async def _delivered(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        statuses = (await session.scalars(select(OutboxDelivery.status))).all()
    return statuses.count(DeliveryStatus.DELIVERED)


async def test_every_event_of_a_participants_journey_reaches_the_receiver_signed(
    isolated_settings: Settings,
    tmp_path: Path,
    redis_url: str,
    receiver: Receiver,
    workers: Workers,
) -> None:
    settings = worker_settings(isolated_settings, tmp_path, CELERY_BROKER_URL=redis_url)
    worker = workers.start(settings)
    engine = create_engine(settings)
    sessions = create_sessionmaker(engine)
    try:
        async with lifespan_client(create_app(settings)) as client, sessions() as session:
            study_row = await factories.study(session)
            researcher = await factories.study_member(
                session, client, study_row, MemberRole.RESEARCHER
            )
            staff = researcher.headers
            study = f"/api/studies/{study_row.id}"
            assert (
                await client.post(f"{study}/status", headers=staff, json={"status": "active"})
            ).status_code == 200

            hook = await client.post(
                f"{study}/webhooks",
                headers=staff,
                json={"url": receiver.url(), "events": EVERY_EVENT, "description": "pipeline"},
            )
            assert hook.status_code == 201, hook.text
            receiver.secrets.append(hook.json()["secret"])
            battery = await client.post(
                "/api/batteries",
                headers=staff,
                json={
                    "study_id": str(study_row.id),
                    "name": "Two tasks",
                    "tasks": [
                        {"module_id": "simple-rt", "config": {}},
                        {"module_id": "choice-rt", "config": {}},
                    ],
                },
            )
            assert battery.status_code == 201, battery.text
            form = await client.post(
                "/api/consent/forms",
                headers=staff,
                json={
                    "study_id": str(study_row.id),
                    "language": "en",
                    "title": "Consent",
                    "content": "# Consent\n\nYou may stop at any time.",
                    "requires_signature": False,
                },
            )
            await client.post(
                f"/api/consent/forms/{form.json()['id']}/publish", headers=staff, json={}
            )
            participant = await client.post(
                "/api/participants",
                headers=staff,
                json={
                    "study_id": str(study_row.id),
                    "participant_id": "E2E-01",
                    "email": "e2e.participant@example.org",
                },
            )
            assert participant.status_code == 201, participant.text
            participant_id = participant.json()["id"]
            code = await client.post(
                f"/api/participants/{participant_id}/access-code", headers=staff
            )
            signed_in = await client.post(
                "/api/auth/participant",
                json={
                    "study_code": study_row.code,
                    "participant_id": "E2E-01",
                    "access_code": code.json()["access_code"],
                },
            )
            assert signed_in.status_code == 200, signed_in.text
            own = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}

            signed = await client.post(
                "/api/consent/sign",
                headers=own,
                json={
                    "form_id": form.json()["id"],
                    "signer_name": "E. Participant",
                    "signer_role": "participant",
                },
            )
            assert signed.status_code == 201, signed.text
            started = await client.post(
                "/api/session/start",
                headers=own,
                json={"participant_id": "E2E-01", "battery_id": battery.json()["id"]},
            )
            assert started.status_code == 201, started.text
            session_id = started.json()["session_id"]
            for task in ("simple-rt", "choice-rt"):
                trials = factories.task_trials(task, 15)
                submitted = await factories.submit(client, own, session_id, {"trials": trials})
                assert submitted.status_code == 201, submitted.text
            ended = await client.post(
                "/api/session/end",
                headers=own,
                json={"session_id": session_id, "status": "completed"},
            )
            assert ended.status_code == 200, ended.text
            withdrawn = await client.post(
                f"/api/participants/{participant_id}/withdraw",
                headers=staff,
                json={"reason": "moved away", "scope": "stop_collection"},
            )
            assert withdrawn.status_code == 200, withdrawn.text

            # Six events; no task was sent by the test and no beat runs: the API's kicks did it.
            # Until the worker has recorded the last answer, not only sent the last request.
            deadline = time.monotonic() + 60
            while await _delivered(sessions) < 6 and time.monotonic() < deadline:
                assert worker.poll() is None
                await asyncio.sleep(0.1)
            log = await client.get(
                f"{study}/webhooks/{hook.json()['id']}/deliveries", headers=staff
            )

        posts = receiver.posts()
        assert all(request.verified for request in posts)
        assert sorted(request.json()["event"] for request in posts) == sorted(
            [*EVERY_EVENT, "task.accepted"]
        )
        assert len({request.event_id for request in posts}) == 6
        assert all(request.json()["data"]["participant_code"] == "E2E-01" for request in posts)
        assert all(b"e2e.participant@example.org" not in request.body for request in posts)
        completed = next(r.json() for r in posts if r.json()["event"] == "session.completed")
        assert [t["task"] for t in completed["data"]["tasks"]] == ["simple-rt", "choice-rt"]
        assert await _delivered(sessions) == 6
        assert log.status_code == 200 and log.json()["pagination"]["total"] == 6
    finally:
        await engine.dispose()
    assert workers.stop(worker) == 0
