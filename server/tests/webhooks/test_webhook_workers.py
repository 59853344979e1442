"""Webhook deliveries by real Celery worker processes, on the Redis broker and on the embedded one,
kicked by the API after its commit, and surviving a worker SIGKILLed in the middle of one.

These tests commit for real (the workers read the database from connections of their own), on a
database built for each test (`isolated_settings`)."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.core.clock import utcnow
from app.core.security import FieldEncryptor
from app.db.session import create_engine, create_sessionmaker
from app.main import create_app
from app.models.outbox import (
    AttemptOutcome,
    DeliveryStatus,
    EventType,
    OutboxDelivery,
    OutboxDeliveryAttempt,
)
from app.models.study import MemberRole
from app.models.webhook import WebhookSubscription
from app.services.outbox.writer import NewEvent, emit_many
from app.services.webhooks.signing import generate_secret
from app.workers.celery_app import create_celery_app, prepare_embedded_broker
from app.workers.tasks import DISPATCH_WEBHOOKS_TASK
from tests import factories
from tests.conftest import lifespan_client
from tests.webhooks.processes import Workers, running_workers, worker_settings
from tests.webhooks.receiver import Answer, Receiver, running

WAIT_SECONDS = 60


@pytest.fixture
def workers() -> Iterator[Workers]:
    yield from running_workers()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from running(Receiver())


@pytest.fixture
async def sessions(isolated_settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(isolated_settings)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def _subscribe(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, url: str
) -> tuple[uuid.UUID, str]:
    """A study with a webhook for enrollments: (study id, secret)."""
    secret = generate_secret()
    async with sessions() as session:
        study = await factories.study(session)
        session.add(
            WebhookSubscription(
                id=uuid.uuid4(),
                study_id=study.id,
                url=url,
                event_types=[EventType.PARTICIPANT_ENROLLED.value],
                active=True,
                secret_encrypted=FieldEncryptor.from_settings(settings).encrypt(secret),
                secret_created_at=utcnow(),
            )
        )
        await session.commit()
        return study.id, secret


async def _emit(
    sessions: async_sessionmaker[AsyncSession], study_id: uuid.UUID, count: int
) -> set[str]:
    async with sessions() as session:
        ids = await emit_many(
            session,
            [
                NewEvent(
                    EventType.PARTICIPANT_ENROLLED,
                    study_id,
                    {"participant_code": f"W{index:03d}"},
                )
                for index in range(count)
            ],
        )
        await session.commit()
    return {str(event_id) for event_id in ids}


async def _statuses(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessions() as session:
        rows = await session.execute(
            select(OutboxDelivery.status, func.count()).group_by(OutboxDelivery.status)
        )
        return {status.value: int(count) for status, count in rows}


async def _wait_delivered(
    sessions: async_sessionmaker[AsyncSession],
    count: int,
    worker: subprocess.Popen[bytes],
    nudge: Any = None,
) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if (await _statuses(sessions)).get("delivered", 0) == count:
            return
        assert worker.poll() is None, "the worker exited"
        if nudge is not None:
            nudge()
        await asyncio.sleep(0.5)
    raise AssertionError(f"not delivered within {WAIT_SECONDS} s: {await _statuses(sessions)}")


async def _eventually(condition: Callable[[], bool]) -> bool:
    """Wait for `condition` without blocking the event loop (the API's kick runs on it)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.1)
    return condition()


async def test_a_worker_on_the_redis_broker_delivers_every_event_signed(
    isolated_settings: Settings,
    tmp_path: Path,
    redis_url: str,
    receiver: Receiver,
    sessions: async_sessionmaker[AsyncSession],
    workers: Workers,
) -> None:
    settings = worker_settings(isolated_settings, tmp_path, CELERY_BROKER_URL=redis_url)
    receiver.plan = lambda index: Answer(status=500 if index % 3 == 1 else 200)
    study_id, secret = await _subscribe(sessions, settings, receiver.url())
    receiver.secrets.append(secret)
    expected = await _emit(sessions, study_id, 12)

    worker = workers.start(settings)
    sender = create_celery_app(settings)
    sender.send_task(DISPATCH_WEBHOOKS_TASK)
    # Retries fall due while no task runs: beat's scan is played by sending the task again.
    await _wait_delivered(sessions, 12, worker, lambda: sender.send_task(DISPATCH_WEBHOOKS_TASK))

    posts = receiver.posts()
    assert all(request.verified for request in posts)
    assert {request.event_id for request in posts} == expected
    assert len(posts) > 12  # the receiver refused some at first
    async with sessions() as session:
        attempts = await session.scalar(select(func.count()).select_from(OutboxDeliveryAttempt))
    assert attempts == len(posts)
    assert workers.stop(worker) == 0


async def test_the_embedded_broker_runs_the_same_dispatcher(
    isolated_settings: Settings,
    tmp_path: Path,
    receiver: Receiver,
    sessions: async_sessionmaker[AsyncSession],
    workers: Workers,
) -> None:
    settings = worker_settings(isolated_settings, tmp_path)
    assert settings.uses_embedded_broker
    study_id, secret = await _subscribe(sessions, settings, receiver.url())
    receiver.secrets.append(secret)
    expected = await _emit(sessions, study_id, 5)

    worker = workers.start(settings)
    prepare_embedded_broker(settings)
    create_celery_app(settings).send_task(DISPATCH_WEBHOOKS_TASK)
    await _wait_delivered(sessions, 5, worker)

    posts = receiver.posts()
    assert {request.event_id for request in posts} == expected
    assert all(request.verified for request in posts)
    assert workers.stop(worker) == 0


async def test_the_api_asks_a_worker_to_deliver_right_after_its_commit(
    isolated_settings: Settings,
    tmp_path: Path,
    redis_url: str,
    receiver: Receiver,
    sessions: async_sessionmaker[AsyncSession],
    workers: Workers,
) -> None:
    settings = worker_settings(isolated_settings, tmp_path, CELERY_BROKER_URL=redis_url)
    worker = workers.start(settings)
    async with lifespan_client(create_app(settings)) as client, sessions() as session:
        study = await factories.study(session)
        researcher = await factories.study_member(session, client, study, MemberRole.RESEARCHER)
        created = await client.post(
            f"/api/studies/{study.id}/webhooks",
            headers=researcher.headers,
            json={"url": receiver.url(), "events": ["participant.enrolled"]},
        )
        assert created.status_code == 201, created.text
        receiver.secrets.append(created.json()["secret"])
        enrolled = await client.post(
            "/api/participants",
            headers=researcher.headers,
            json={"study_id": str(study.id), "participant_id": "KICK-01"},
        )
        assert enrolled.status_code == 201

        # No task is sent by the test and no beat runs: only the API's kick can start a run.
        assert await _eventually(lambda: len(receiver.posts()) == 1)
    [request] = receiver.posts()
    assert request.verified
    assert request.json()["data"]["participant_code"] == "KICK-01"
    assert workers.stop(worker) == 0


async def test_a_worker_killed_in_the_middle_of_a_delivery_loses_nothing(
    isolated_settings: Settings,
    tmp_path: Path,
    redis_url: str,
    receiver: Receiver,
    sessions: async_sessionmaker[AsyncSession],
    workers: Workers,
) -> None:
    # The worker waits up to 8 s for an answer: the test kills it well within that, however
    # loaded the machine. Its claim then runs out after 10 s.
    settings = worker_settings(
        isolated_settings,
        tmp_path,
        CELERY_BROKER_URL=redis_url,
        WEBHOOK_TIMEOUT_SECONDS=8.0,
        OUTBOX_LEASE_SECONDS=10.0,
    )
    # The first request hangs past the worker's death; later ones are answered at once.
    receiver.plan = lambda index: Answer(delay_seconds=20.0 if index == 0 else 0.0)
    study_id, secret = await _subscribe(sessions, settings, receiver.url())
    receiver.secrets.append(secret)
    [event_id] = await _emit(sessions, study_id, 1)

    first = workers.start(settings)
    sender = create_celery_app(settings)
    sender.send_task(DISPATCH_WEBHOOKS_TASK)
    assert await _eventually(lambda: len(receiver.posts()) == 1)
    workers.kill(first)  # mid-delivery: the receiver has the request, the result is not recorded
    assert await _statuses(sessions) == {"delivering": 1}

    second = workers.start(settings)
    await _wait_delivered(sessions, 1, second, lambda: sender.send_task(DISPATCH_WEBHOOKS_TASK))

    posts = receiver.posts()
    assert [request.event_id for request in posts] == [event_id, event_id]  # at least once
    assert all(request.verified for request in posts)
    async with sessions() as session:
        delivery = await session.scalar(select(OutboxDelivery))
        assert delivery is not None
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 2)
        outcomes = (
            await session.scalars(
                select(OutboxDeliveryAttempt.outcome).order_by(OutboxDeliveryAttempt.number)
            )
        ).all()
    assert list(outcomes) == [AttemptOutcome.INTERRUPTED, AttemptOutcome.DELIVERED]
    assert workers.stop(second) == 0
