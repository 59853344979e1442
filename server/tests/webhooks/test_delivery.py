"""Deliveries end to end in one process: events written by the API, sent by the dispatcher to a
real HTTP receiver on 127.0.0.1 that checks each signature with the documented snippet."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.core.security import FieldEncryptor
from app.models.audit import AuditEvent
from app.models.outbox import DestinationKind, OutboxDelivery, OutboxEvent
from app.services.outbox.dispatch import RetryPolicy, SessionFactory, claim_due
from app.services.webhooks.delivery import webhook_client, webhook_destination
from tests.webhooks.conftest import (
    RETRY_BASE_SECONDS,
    Team,
    create_webhook,
    deliveries,
    delivery,
    dispatch_now,
    enroll,
    make_due,
    webhook_settings,
)
from tests.webhooks.receiver import Answer, Receiver, always, documented_verifier

ENROLLED = "participant.enrolled"


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_a_delivery_is_signed_carries_the_event_id_and_no_contact_details(
    client: httpx.AsyncClient,
    team: Team,
    receiver: Receiver,
    sessions: SessionFactory,
    settings: Settings,
) -> None:
    webhook = await create_webhook(client, team, receiver.url(), [ENROLLED])
    receiver.secrets.append(webhook["secret"])
    participant = await enroll(
        client, team, "P-001", email="ada@example.org", phone="+44 20 7946 0958"
    )

    report = await dispatch_now(sessions, settings)

    assert (report.attempts, report.delivered) == (1, 1)
    [request] = receiver.posts()
    assert request.verified
    body = request.json()
    assert request.event_id == body["id"]
    assert request.headers["x-metricis-event"] == ENROLLED
    assert request.headers["content-type"] == "application/json"
    assert body["event"] == ENROLLED and body["version"] == 1
    assert body["study_id"] == str(team.study_id)
    assert body["data"]["participant_id"] == participant["id"]
    assert body["data"]["participant_code"] == "P-001"
    assert "ada@example.org" not in request.body.decode()
    assert "7946" not in request.body.decode()

    [row] = await deliveries(client, team, webhook["id"])
    assert row["status"] == "delivered" and row["attempts"] == 1
    assert row["event_id"] == body["id"] and row["last_status_code"] == 200
    detail = await delivery(client, team, webhook["id"], row["id"])
    [attempt] = detail["attempt_log"]
    assert attempt["outcome"] == "delivered" and attempt["status_code"] == 200
    assert attempt["duration_ms"] is not None and attempt["finished_at"] is not None
    assert detail["event"]["data"] == body["data"]


async def test_failures_back_off_with_jitter_then_the_delivery_is_dead(
    client: httpx.AsyncClient,
    team: Team,
    receiver: Receiver,
    sessions: SessionFactory,
    settings: Settings,
    db_session: AsyncSession,
) -> None:
    receiver.plan = always(Answer(status=500))
    webhook = await create_webhook(client, team, receiver.url(), [ENROLLED])
    await enroll(client, team, "P-002")

    waits = []
    for attempt in range(1, settings.OUTBOX_MAX_ATTEMPTS + 1):
        await dispatch_now(sessions, settings)
        [row] = await deliveries(client, team, webhook["id"])
        assert row["attempts"] == attempt
        assert row["last_status_code"] == 500
        if attempt < settings.OUTBOX_MAX_ATTEMPTS:
            assert row["status"] == "failed"
            waits.append(
                (_at(row["next_attempt_at"]) - _at(row["last_attempt_at"])).total_seconds()
            )
            assert await make_due(db_session) == 1
    # Between half and all of base × 2^(n-1).
    for failures, wait in enumerate(waits, start=1):
        ceiling = RETRY_BASE_SECONDS * 2 ** (failures - 1)
        assert ceiling / 2 - 1 <= wait <= ceiling + 1, (failures, wait)
    assert row["status"] == "dead" and row["next_attempt_at"] is None

    # Dead means no further attempt, however many runs come.
    await dispatch_now(sessions, settings)
    assert len(receiver.posts()) == settings.OUTBOX_MAX_ATTEMPTS
    detail = await delivery(client, team, webhook["id"], row["id"])
    assert [a["outcome"] for a in detail["attempt_log"]] == ["http_error"] * 3
    assert [a["number"] for a in detail["attempt_log"]] == [1, 2, 3]


def test_the_backoff_doubles_up_to_its_cap_with_jitter_below_it() -> None:
    policy = RetryPolicy(max_attempts=20, base_seconds=10, max_seconds=300)
    assert [policy.ceiling(n) for n in range(1, 8)] == [10, 20, 40, 80, 160, 300, 300]
    delays = [policy.delay(4) for _ in range(200)]
    assert all(40 <= delay <= 80 for delay in delays)
    assert len({round(delay, 3) for delay in delays}) > 150  # jittered, not one value
    assert policy.ceiling(10_000) == 300  # no overflow however many failures


async def test_an_answer_slower_than_the_timeout_is_a_timed_out_attempt(
    client: httpx.AsyncClient,
    team: Team,
    receiver: Receiver,
    sessions: SessionFactory,
    settings: Settings,
) -> None:
    receiver.plan = always(Answer(delay_seconds=settings.WEBHOOK_TIMEOUT_SECONDS + 5))
    webhook = await create_webhook(client, team, receiver.url(), [ENROLLED])
    await enroll(client, team, "P-003")

    await dispatch_now(sessions, settings)

    [row] = await deliveries(client, team, webhook["id"])
    [attempt] = (await delivery(client, team, webhook["id"], row["id"]))["attempt_log"]
    assert attempt["outcome"] == "timeout" and attempt["status_code"] is None
    # Cut off at the timeout, long before the receiver would have answered.
    assert 900 <= attempt["duration_ms"] < 5000
    assert row["status"] == "failed"


async def test_a_redirect_is_a_failed_attempt_and_is_not_followed(
    client: httpx.AsyncClient,
    team: Team,
    receiver: Receiver,
    sessions: SessionFactory,
    settings: Settings,
) -> None:
    receiver.plan = always(Answer(status=302, location=receiver.url("/elsewhere")))
    webhook = await create_webhook(client, team, receiver.url(), [ENROLLED])
    await enroll(client, team, "P-004")

    await dispatch_now(sessions, settings)

    assert [(r.method, r.path) for r in receiver.received] == [("POST", "/hook")]
    [row] = await deliveries(client, team, webhook["id"])
    assert (row["status"], row["last_status_code"]) == ("failed", 302)
    assert "redirects are not followed" in row["last_error"]


async def test_a_target_no_longer_allowed_is_refused_before_anything_is_sent(
    client: httpx.AsyncClient,
    team: Team,
    receiver: Receiver,
    sessions: SessionFactory,
    database_url: str,
    storage_dir: Path,
) -> None:
    webhook = await create_webhook(client, team, receiver.url(), [ENROLLED])
    await enroll(client, team, "P-005")
    # The same deployment with the allow-list emptied: 127.0.0.1 is loopback again.
    strict = webhook_settings(database_url, storage_dir, WEBHOOK_ALLOWED_HOSTS=[])

    await dispatch_now(sessions, strict)

    assert receiver.received == []
    [row] = await deliveries(client, team, webhook["id"])
    [attempt] = (await delivery(client, team, webhook["id"], row["id"]))["attempt_log"]
    assert attempt["outcome"] == "refused_target"
    assert "not public" in attempt["error"]
    assert "127.0.0.1" not in attempt["error"]


async def test_during_a_rotation_overlap_both_secrets_verify_and_after_it_only_the_new(
    client: httpx.AsyncClient,
    team: Team,
    receiver: Receiver,
    sessions: SessionFactory,
    settings: Settings,
) -> None:
    verify = documented_verifier()
    webhook = await create_webhook(client, team, receiver.url(), [ENROLLED])
    old = webhook["secret"]
    rotated = await client.post(
        f"{team.webhooks}/{webhook['id']}/rotate-secret",
        headers=team.researcher,
        json={"overlap_seconds": 3600},
    )
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != old and new.startswith("whsec_")
    assert rotated.json()["previous_secret_expires_at"] is not None
    await enroll(client, team, "P-006")
    await dispatch_now(sessions, settings)
    [during] = receiver.posts()
    header = during.headers["x-metricis-signature"]
    assert header.count("v1=") == 2
    assert verify(old, header, during.body) and verify(new, header, during.body)

    ended = await client.post(
        f"{team.webhooks}/{webhook['id']}/rotate-secret",
        headers=team.researcher,
        json={"overlap_seconds": 0},
    )
    newest = ended.json()["secret"]
    assert ended.json()["previous_secret_expires_at"] is None
    await enroll(client, team, "P-007")
    await dispatch_now(sessions, settings)
    after = receiver.posts()[1]
    header = after.headers["x-metricis-signature"]
    assert header.count("v1=") == 1
    assert verify(newest, header, after.body)
    assert not verify(new, header, after.body) and not verify(old, header, after.body)
    # A body changed on the way, or an old timestamp, does not verify.
    assert not verify(newest, header, after.body + b" ")
    assert not verify(newest, header, after.body, now=utcnow().timestamp() + 3600)


async def test_a_paused_webhook_holds_its_queue_and_skips_new_events(
    client: httpx.AsyncClient,
    team: Team,
    receiver: Receiver,
    sessions: SessionFactory,
    settings: Settings,
) -> None:
    webhook = await create_webhook(client, team, receiver.url(), [ENROLLED])
    url = f"{team.webhooks}/{webhook['id']}"
    await enroll(client, team, "P-008")
    paused = await client.patch(url, headers=team.researcher, json={"active": False})
    assert paused.status_code == 200 and paused.json()["active"] is False
    await enroll(client, team, "P-009")  # while paused: no delivery for it

    assert (await dispatch_now(sessions, settings)).attempts == 0
    assert receiver.received == []

    resumed = await client.patch(url, headers=team.researcher, json={"active": True})
    assert resumed.status_code == 200
    await dispatch_now(sessions, settings)
    [request] = receiver.posts()
    assert request.json()["data"]["participant_code"] == "P-008"
    assert len(await deliveries(client, team, webhook["id"])) == 1


async def test_a_delivery_whose_worker_died_is_claimed_again_after_its_lease(
    client: httpx.AsyncClient,
    team: Team,
    receiver: Receiver,
    sessions: SessionFactory,
    settings: Settings,
    db_session: AsyncSession,
) -> None:
    webhook = await create_webhook(client, team, receiver.url(), [ENROLLED])
    await enroll(client, team, "P-010")
    # A worker claims it and dies before recording anything.
    async with webhook_client(settings) as http:
        destination = webhook_destination(settings, FieldEncryptor.from_settings(settings), http)
        claimed = await claim_due(
            db_session,
            DestinationKind.WEBHOOK,
            destination.conditions,
            RetryPolicy.from_settings(settings),
            lease_seconds=60,
        )
    await db_session.commit()
    assert len(claimed) == 1
    [held] = await deliveries(client, team, webhook["id"])
    assert held["status"] == "delivering"
    # Before the lease ends nobody else takes it.
    assert (await dispatch_now(sessions, settings)).attempts == 0
    expired = await db_session.get(OutboxDelivery, claimed[0].delivery_id)
    assert expired is not None
    expired.next_attempt_at = utcnow() - timedelta(seconds=1)
    await db_session.commit()

    await dispatch_now(sessions, settings)

    [row] = await deliveries(client, team, webhook["id"])
    assert (row["status"], row["attempts"]) == ("delivered", 2)
    log = (await delivery(client, team, webhook["id"], row["id"]))["attempt_log"]
    assert [a["outcome"] for a in log] == ["interrupted", "delivered"]
    assert len(receiver.posts()) == 1


async def test_attempts_cut_short_use_up_the_allowance_and_the_run_moves_on(
    client: httpx.AsyncClient,
    team: Team,
    receiver: Receiver,
    sessions: SessionFactory,
    settings: Settings,
    db_session: AsyncSession,
) -> None:
    webhook = await create_webhook(client, team, receiver.url(), [ENROLLED])
    await enroll(client, team, "P-016")
    policy = RetryPolicy.from_settings(settings)
    async with webhook_client(settings) as http:
        destination = webhook_destination(settings, FieldEncryptor.from_settings(settings), http)
        # Three workers in a row claim it and die: each lease runs out.
        for _ in range(settings.OUTBOX_MAX_ATTEMPTS):
            [claimed] = await claim_due(
                db_session,
                DestinationKind.WEBHOOK,
                destination.conditions,
                policy,
                lease_seconds=60,
            )
            held = await db_session.get(OutboxDelivery, claimed.delivery_id)
            assert held is not None
            held.next_attempt_at = utcnow() - timedelta(seconds=1)
            await db_session.commit()
    await enroll(client, team, "P-017")

    await dispatch_now(sessions, settings)

    exhausted, sent = await deliveries(client, team, webhook["id"])
    assert (exhausted["status"], exhausted["attempts"]) == ("dead", 3)
    log = (await delivery(client, team, webhook["id"], exhausted["id"]))["attempt_log"]
    assert [a["outcome"] for a in log] == ["interrupted"] * 3
    assert sent["status"] == "delivered"
    [request] = receiver.posts()
    assert request.json()["data"]["participant_code"] == "P-017"


async def test_redelivery_sends_the_same_event_again_with_fresh_attempts_and_is_audited(
    client: httpx.AsyncClient,
    team: Team,
    receiver: Receiver,
    sessions: SessionFactory,
    settings: Settings,
    db_session: AsyncSession,
) -> None:
    receiver.plan = always(Answer(status=503))
    webhook = await create_webhook(client, team, receiver.url(), [ENROLLED])
    receiver.secrets.append(webhook["secret"])
    await enroll(client, team, "P-011")
    for _ in range(settings.OUTBOX_MAX_ATTEMPTS):
        await dispatch_now(sessions, settings)
        await make_due(db_session)
    [dead] = await deliveries(client, team, webhook["id"])
    assert dead["status"] == "dead"

    receiver.plan = always(Answer(status=204))
    url = f"{team.webhooks}/{webhook['id']}/deliveries/{dead['id']}/redeliver"
    for caller, expected in ((team.coordinator, 403), (team.outsider, 404)):
        assert (await client.post(url, headers=caller)).status_code == expected
    answer = await client.post(url, headers=team.researcher)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "pending"
    await dispatch_now(sessions, settings)

    [row] = await deliveries(client, team, webhook["id"])
    assert (row["status"], row["attempts"]) == ("delivered", 4)
    posts = receiver.posts()
    assert len({r.event_id for r in posts}) == 1 and all(r.verified for r in posts)
    audited = (
        await db_session.scalars(
            select(AuditEvent).where(AuditEvent.action == "webhook.delivery_redelivered")
        )
    ).all()
    assert [(e.entity_id, e.before) for e in audited] == [
        (dead["id"], {"status": "dead", "attempts": 3})
    ]


async def test_an_attempt_in_flight_cannot_be_redelivered(
    client: httpx.AsyncClient,
    team: Team,
    receiver: Receiver,
    settings: Settings,
    db_session: AsyncSession,
) -> None:
    webhook = await create_webhook(client, team, receiver.url(), [ENROLLED])
    await enroll(client, team, "P-012")
    async with webhook_client(settings) as http:
        destination = webhook_destination(settings, FieldEncryptor.from_settings(settings), http)
        await claim_due(
            db_session,
            DestinationKind.WEBHOOK,
            destination.conditions,
            RetryPolicy.from_settings(settings),
            lease_seconds=60,
        )
    await db_session.commit()
    [row] = await deliveries(client, team, webhook["id"])
    answer = await client.post(
        f"{team.webhooks}/{webhook['id']}/deliveries/{row['id']}/redeliver",
        headers=team.researcher,
    )
    assert answer.status_code == 409
    assert answer.json()["error"]["details"]["reason"] == "DELIVERY_IN_PROGRESS"


async def test_a_test_event_reaches_only_its_webhook_and_a_paused_one_refuses_it(
    client: httpx.AsyncClient,
    team: Team,
    receiver: Receiver,
    sessions: SessionFactory,
    settings: Settings,
) -> None:
    tested = await create_webhook(client, team, receiver.url("/tested"), [ENROLLED])
    await create_webhook(client, team, receiver.url("/other"), ["session.completed"])
    receiver.secrets.append(tested["secret"])
    answer = await client.post(f"{team.webhooks}/{tested['id']}/test", headers=team.researcher)
    assert answer.status_code == 202, answer.text
    assert (answer.json()["status"], answer.json()["event_type"]) == ("pending", "webhook.test")

    await dispatch_now(sessions, settings)

    [request] = receiver.posts()
    assert request.path == "/tested" and request.verified
    assert request.json()["data"]["subscription_id"] == tested["id"]
    [row] = await deliveries(client, team, tested["id"])
    assert row["status"] == "delivered"

    await client.patch(
        f"{team.webhooks}/{tested['id']}", headers=team.researcher, json={"active": False}
    )
    refused = await client.post(f"{team.webhooks}/{tested['id']}/test", headers=team.researcher)
    assert refused.status_code == 409
    assert refused.json()["error"]["details"]["reason"] == "WEBHOOK_INACTIVE"


async def test_the_delivery_log_filters_by_status_type_and_event(
    client: httpx.AsyncClient,
    team: Team,
    receiver: Receiver,
    sessions: SessionFactory,
    settings: Settings,
) -> None:
    receiver.plan = lambda index: Answer(status=200 if index == 0 else 500)
    webhook = await create_webhook(client, team, receiver.url(), [ENROLLED])
    await enroll(client, team, "P-013")
    await dispatch_now(sessions, settings)
    await enroll(client, team, "P-014")
    await dispatch_now(sessions, settings)
    await client.post(f"{team.webhooks}/{webhook['id']}/test", headers=team.researcher)

    everything = await deliveries(client, team, webhook["id"])
    assert len(everything) == 3
    assert [
        r["status"] for r in await deliveries(client, team, webhook["id"], status="failed")
    ] == ["failed"]
    tests = await deliveries(client, team, webhook["id"], event_type="webhook.test")
    assert [r["status"] for r in tests] == ["pending"]
    first = everything[0]
    by_event = await deliveries(client, team, webhook["id"], event_id=first["event_id"])
    assert [r["id"] for r in by_event] == [first["id"]]
    newest_first = await deliveries(client, team, webhook["id"], order="desc")
    assert [r["id"] for r in newest_first] == [r["id"] for r in reversed(everything)]
    for params in ({"status": "lost"}, {"event_type": "session.started"}, {"sort": "url"}):
        refused = await client.get(
            f"{team.webhooks}/{webhook['id']}/deliveries", headers=team.researcher, params=params
        )
        assert refused.status_code == 422, params
    # Another webhook's delivery is not found under this one.
    other = await create_webhook(client, team, receiver.url("/x"), [ENROLLED])
    missing = await client.get(
        f"{team.webhooks}/{other['id']}/deliveries/{first['id']}", headers=team.researcher
    )
    assert missing.status_code == 404


@pytest.mark.parametrize("header", ["", "garbage", "v1=00", "t=abc,v1=00", "t=1,t=2,v1=00"])
def test_the_documented_snippet_refuses_a_malformed_header(header: str) -> None:
    assert not documented_verifier()("whsec_x", header, b"{}")


async def test_deleting_a_webhook_drops_its_queue_and_is_audited(
    client: httpx.AsyncClient,
    team: Team,
    receiver: Receiver,
    sessions: SessionFactory,
    settings: Settings,
    db_session: AsyncSession,
) -> None:
    webhook = await create_webhook(client, team, receiver.url(), [ENROLLED])
    await enroll(client, team, "P-015")
    answer = await client.delete(f"{team.webhooks}/{webhook['id']}", headers=team.researcher)
    assert answer.status_code == 204

    assert (await dispatch_now(sessions, settings)).attempts == 0
    left = await db_session.scalar(
        select(func.count())
        .select_from(OutboxDelivery)
        .join(OutboxEvent, OutboxEvent.id == OutboxDelivery.event_id)
        .where(OutboxEvent.study_id == team.study_id)
    )
    assert left == 0
    [event] = (
        await db_session.scalars(select(AuditEvent).where(AuditEvent.action == "webhook.delete"))
    ).all()
    assert event.after == {"undelivered_dropped": 1}
    gone = await client.get(f"{team.webhooks}/{webhook['id']}", headers=team.researcher)
    assert gone.status_code == 404
