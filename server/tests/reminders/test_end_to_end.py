"""Reminders end to end, through the API and a real Celery worker process with beat, on Redis
and on the embedded broker: enroll → visits planned → the window is open → beat's scan writes
the reminders → the dispatcher sends the opening one to an aiosmtpd server on 127.0.0.1 with a
sign-in link that works → a session with `visit_id` completes the visit → the pending "1 day
before close" reminder is cancelled and never sent."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.config import Settings
from app.core.clock import utcnow
from app.main import create_app
from app.models.notification import Notification, NotificationStatus
from app.services.schedules.timing import zone
from tests import factories
from tests.conftest import lifespan_client, make_settings
from tests.notifications.conftest import SmsApi, SmtpServer, delivery_settings, session_on
from tests.notifications.test_workers import Workers
from tests.reminders.conftest import closing_rule
from tests.schedules.conftest import PARIS, build_world, create_schedule, email_rule, event

# A bound, not a figure: a worker and beat starting on a loaded machine (the embedded broker
# polls its folders) have taken over 90 s before their first tick; alone the test takes ~10 s.
WAIT_SECONDS = 240
SIGN_IN = re.compile(r"https://metricis\.example\.org/participant/sign-in\?token=([A-Za-z0-9_-]+)")


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    started = Workers(tmp_path)
    yield started
    started.stop_all()


async def _reminders(settings: Settings, participant_id: uuid.UUID) -> list[Notification]:
    async with session_on(settings) as session:
        rows = await session.scalars(
            select(Notification)
            .where(Notification.participant_id == participant_id)
            .order_by(Notification.send_at)
        )
        return list(rows.all())


async def _wait_for(what: str, check: Any, worker: Any) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not await check():
        assert worker.poll() is None, f"the worker exited while waiting for {what}"
        assert time.monotonic() < deadline, f"{what} did not happen within {WAIT_SECONDS} s"
        await asyncio.sleep(0.25)


async def test_on_redis_with_a_real_worker(
    committed_settings: Settings,
    tmp_path: Path,
    redis_url: str,
    smtp_server: SmtpServer,
    sms_api: SmsApi,
    workers: Workers,
) -> None:
    settings = make_settings(
        committed_settings.DATABASE_URL,
        tmp_path,
        **delivery_settings(smtp_server.port, sms_api.url),
        CELERY_BROKER_URL=redis_url,
    )
    assert not settings.uses_embedded_broker
    await _reminder_goes_out_once_and_the_next_is_cancelled_by_the_session(
        settings, smtp_server, workers
    )


async def test_on_the_embedded_broker(
    committed_settings: Settings,
    tmp_path: Path,
    smtp_server: SmtpServer,
    sms_api: SmsApi,
    workers: Workers,
) -> None:
    settings = make_settings(
        committed_settings.DATABASE_URL,
        tmp_path,
        **delivery_settings(smtp_server.port, sms_api.url),
    )
    assert settings.uses_embedded_broker
    await _reminder_goes_out_once_and_the_next_is_cancelled_by_the_session(
        settings, smtp_server, workers
    )


async def _reminder_goes_out_once_and_the_next_is_cancelled_by_the_session(
    settings: Settings, smtp_server: SmtpServer, workers: Workers
) -> None:
    local_now = utcnow().astimezone(zone(PARIS))
    if local_now.hour == 0 and local_now.minute < 5:
        pytest.skip("the opening reminder's time would fall on the previous day")
    # Due two minutes ago, on the window's first day: the scan writes it and it goes out now.
    due = (local_now - timedelta(minutes=2)).strftime("%H:%M")

    async with lifespan_client(create_app(settings)) as client:
        async with session_on(settings) as session:
            world = await build_world(client, session)
            await session.commit()
        await create_schedule(
            client,
            world,
            [
                event(
                    "baseline",
                    0,
                    world.battery_id,
                    after=7,
                    reminders=[email_rule(local_time=due), closing_rule("09:00")],
                )
            ],
        )
        enrolled = await client.post(
            "/api/participants",
            headers=world.coordinator,
            json={
                "study_id": str(world.study_id),
                "participant_id": "E2E-1",
                "site_id": "PARIS",
                "email": "e2e-1@example.org",
            },
        )
        assert enrolled.status_code == 201, enrolled.text
        participant_id = uuid.UUID(enrolled.json()["id"])
        visits = await client.get(
            "/api/schedules/visits",
            headers=world.coordinator,
            params={"participant_id": str(participant_id)},
        )
        [visit] = visits.json()["data"]
        assert visit["status"] == "open"

        worker = workers.start(
            settings,
            "--beat",
            REMINDER_SCAN_SECONDS="1",
            NOTIFICATION_DISPATCH_INTERVAL_SECONDS="1",
            # Both reminders within the horizon: the closing one is written (pending) as well.
            REMINDER_SCAN_HORIZON_HOURS=str(24 * 9),
        )

        async def both_written_and_one_sent() -> bool:
            rows = await _reminders(settings, participant_id)
            return len(rows) == 2 and rows[0].status is NotificationStatus.SENT

        await _wait_for("the opening reminder", both_written_and_one_sent, worker)
        opening, closing = await _reminders(settings, participant_id)
        assert closing.status is NotificationStatus.SCHEDULED
        # The stored text keeps the placeholder; the link was made at the send.
        assert opening.body.endswith(": {link}")
        [mail] = smtp_server.received
        assert mail.recipients == ["e2e-1@example.org"]
        assert mail.message["Subject"] == "Your Baseline is open"
        found = SIGN_IN.search(mail.text)
        assert found is not None, mail.text
        assert f"Hello E2E-1, please complete it by {visit['window_end_date']}" in mail.text

        # The link signs the participant in, once.
        signed_in = await client.post("/api/auth/magic-link/verify", json={"token": found.group(1)})
        assert signed_in.status_code == 200, signed_in.text
        again = await client.post("/api/auth/magic-link/verify", json={"token": found.group(1)})
        assert again.status_code == 401

        async with session_on(settings) as session:
            token = await factories.participant_headers(session, settings, participant_id)
        started = await client.post(
            "/api/session/start",
            headers=token,
            json={
                "participant_id": str(participant_id),
                "battery_id": visit["battery_id"],
                "visit_id": visit["id"],
            },
        )
        assert started.status_code == 201, started.text
        ended = await client.post(
            "/api/session/end",
            headers=token,
            json={"session_id": started.json()["session_id"], "status": "completed"},
        )
        assert ended.status_code == 200, ended.text

    opening, closing = await _reminders(settings, participant_id)
    assert (closing.status, closing.cancel_reason) == (
        NotificationStatus.CANCELLED,
        "visit_completed",
    )
    # A few more beat ticks: nothing else is written or sent.
    await asyncio.sleep(3)
    assert worker.poll() is None
    assert len(await _reminders(settings, participant_id)) == 2
    assert len(smtp_server.received) == 1
