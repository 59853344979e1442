"""The webhooks resource: who may use it, what it answers, what it audits."""

from __future__ import annotations

import json
import uuid

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import AuditEvent
from app.models.outbox import EventType
from app.models.webhook import WebhookSubscription
from app.schemas.webhooks import WebhookEventType
from app.services.outbox.events import SUBSCRIBABLE
from tests.webhooks.conftest import Team, create_webhook
from tests.webhooks.receiver import Receiver

SECRET_PREFIX = "whsec_"


async def _audit(db_session: AsyncSession, webhook_id: str) -> list[AuditEvent]:
    return list(
        (
            await db_session.scalars(
                select(AuditEvent)
                .where(AuditEvent.entity_id == webhook_id)
                .order_by(AuditEvent.sequence)
            )
        ).all()
    )


def test_the_subscribable_types_are_every_event_type_but_the_test_event() -> None:
    assert {t.value for t in WebhookEventType} == {t.value for t in SUBSCRIBABLE}
    assert {t.value for t in SUBSCRIBABLE} == {t.value for t in EventType} - {"webhook.test"}


async def test_create_shows_the_secret_once_and_stores_it_encrypted(
    client: httpx.AsyncClient, team: Team, receiver: Receiver, db_session: AsyncSession
) -> None:
    created = await create_webhook(
        client,
        team,
        receiver.url("/hook?token=abc123"),
        ["session.completed", "participant.enrolled", "session.completed"],
        description="  Lab pipeline ",
    )
    secret = created["secret"]
    assert secret.startswith(SECRET_PREFIX) and len(secret) > 40
    assert created["events"] == ["participant.enrolled", "session.completed"]
    assert created["active"] is True and created["description"] == "Lab pipeline"
    assert created["previous_secret_expires_at"] is None

    read = await client.get(f"{team.webhooks}/{created['id']}", headers=team.researcher)
    listed = await client.get(team.webhooks, headers=team.researcher)
    assert read.status_code == 200 and "secret" not in read.json()
    assert [w["id"] for w in listed.json()["data"]] == [created["id"]]
    assert "secret" not in listed.json()["data"][0]
    stored = await db_session.get(WebhookSubscription, uuid.UUID(created["id"]))
    assert stored is not None and secret not in stored.secret_encrypted

    [event] = await _audit(db_session, created["id"])
    assert (event.action, event.category) == ("webhook.create", "config")
    recorded = json.dumps([event.before, event.after])
    assert secret not in recorded and "abc123" not in recorded
    assert event.after is not None and event.after["url"].endswith("/hook?redacted")


async def test_only_those_who_configure_the_study_reach_its_webhooks(
    client: httpx.AsyncClient, team: Team, receiver: Receiver
) -> None:
    created = await create_webhook(client, team, receiver.url(), ["consent.signed"])
    item = f"{team.webhooks}/{created['id']}"
    body = {"url": receiver.url(), "events": ["consent.signed"]}
    calls = [
        ("GET", team.webhooks, None),
        ("POST", team.webhooks, body),
        ("GET", item, None),
        ("PATCH", item, {"active": False}),
        ("POST", f"{item}/rotate-secret", {}),
        ("POST", f"{item}/test", None),
        ("GET", f"{item}/deliveries", None),
        ("DELETE", item, None),
    ]
    for caller, status in ((team.coordinator, 403), (team.read_only, 403), (team.outsider, 404)):
        for method, url, payload in calls:
            answer = await client.request(method, url, headers=caller, json=payload)
            assert answer.status_code == status, (method, url, answer.text)
    assert (await client.get(team.webhooks, headers=team.admin)).status_code == 200
    assert (await client.get(team.webhooks)).status_code == 401


async def test_update_changes_only_what_is_sent_and_audits_a_real_change(
    client: httpx.AsyncClient, team: Team, receiver: Receiver, db_session: AsyncSession
) -> None:
    created = await create_webhook(client, team, receiver.url(), ["consent.signed"])
    item = f"{team.webhooks}/{created['id']}"

    unchanged = await client.patch(item, headers=team.researcher, json={"active": True})
    assert unchanged.status_code == 200
    changed = await client.patch(
        item,
        headers=team.researcher,
        json={"events": ["task.accepted"], "url": receiver.url("/v2?key=k9"), "description": "x"},
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["events"] == ["task.accepted"] and body["url"].endswith("/v2?key=k9")
    assert body["description"] == "x" and body["active"] is True
    cleared = await client.patch(item, headers=team.researcher, json={"description": None})
    assert cleared.json()["description"] is None

    actions = [e.action for e in await _audit(db_session, created["id"])]
    assert actions == ["webhook.create", "webhook.update", "webhook.update"]
    update = (await _audit(db_session, created["id"]))[1]
    assert update.before is not None and update.after is not None
    assert update.before["events"] == ["consent.signed"]
    assert update.after["events"] == ["task.accepted"] and update.after["url_changed"] is True
    assert "k9" not in json.dumps(update.after)


async def test_a_rotation_is_audited_without_any_secret(
    client: httpx.AsyncClient, team: Team, receiver: Receiver, db_session: AsyncSession
) -> None:
    created = await create_webhook(client, team, receiver.url(), ["consent.signed"])
    rotated = await client.post(
        f"{team.webhooks}/{created['id']}/rotate-secret", headers=team.researcher
    )
    assert rotated.status_code == 200
    body = rotated.json()
    assert body["secret"] != created["secret"] and body["previous_secret_expires_at"]
    [_, event] = await _audit(db_session, created["id"])
    assert event.action == "webhook.secret_rotated"
    assert event.after is not None and event.after["overlap_seconds"] == 86400
    recorded = json.dumps(event.after)
    assert body["secret"] not in recorded and created["secret"] not in recorded
    too_long = await client.post(
        f"{team.webhooks}/{created['id']}/rotate-secret",
        headers=team.researcher,
        json={"overlap_seconds": 8 * 24 * 3600},
    )
    assert too_long.status_code == 422


async def test_invalid_bodies_are_refused_with_the_field_named(
    client: httpx.AsyncClient, team: Team, receiver: Receiver
) -> None:
    for body, field in (
        ({"url": receiver.url(), "events": []}, "body.events"),
        ({"url": receiver.url(), "events": ["webhook.test"]}, "body.events.0"),
        ({"url": receiver.url(), "events": ["session.started"]}, "body.events.0"),
        ({"events": ["session.completed"]}, "body.url"),
        ({"url": "x" * 2001, "events": ["session.completed"]}, "body.url"),
    ):
        answer = await client.post(team.webhooks, headers=team.researcher, json=body)
        assert answer.status_code == 422, body
        fields = [e["field"] for e in answer.json()["error"]["details"]["errors"]]
        assert field in fields, (body, fields)
    created = await create_webhook(client, team, receiver.url(), ["consent.signed"])
    emptied = await client.patch(
        f"{team.webhooks}/{created['id']}", headers=team.researcher, json={"events": []}
    )
    assert emptied.status_code == 422


async def test_a_webhook_of_another_study_is_not_found(
    client: httpx.AsyncClient, team: Team, receiver: Receiver, db_session: AsyncSession
) -> None:
    from tests import factories

    created = await create_webhook(client, team, receiver.url(), ["consent.signed"])
    other = await factories.study(db_session)
    answer = await client.get(
        f"/api/studies/{other.id}/webhooks/{created['id']}", headers=team.admin
    )
    assert answer.status_code == 404
    assert answer.json()["error"]["message"] == "Webhook not found"
