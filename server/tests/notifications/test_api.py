"""The notification routes: a participant's notifications, a study's delivery log and statistics,
the audited resend, channel preferences and the signed unsubscribe link."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.models.audit import AuditEvent
from app.models.notification import (
    Notification,
    NotificationChannel,
    NotificationOptOut,
    NotificationStatus,
)
from app.models.study import MemberRole, Site, Study
from app.services.notifications.preferences import unsubscribe_token
from tests import factories
from tests.notifications.helpers import EMAIL, Person, notify, person, reread


@dataclass(frozen=True, slots=True)
class Team:
    study: Study
    site_a: Site
    site_b: Site
    researcher: factories.Staff
    coordinator: factories.Staff
    site_b_coordinator: factories.Staff
    read_only: factories.Staff
    outsider: factories.Staff


async def team(db_session: AsyncSession, client: httpx.AsyncClient) -> Team:
    study = await factories.study(db_session, languages=["en", "fr"])
    site_a = await factories.site(db_session, study, "SITE-A")
    site_b = await factories.site(db_session, study, "SITE-B")
    return Team(
        study,
        site_a,
        site_b,
        researcher=await factories.study_member(db_session, client, study, MemberRole.RESEARCHER),
        coordinator=await factories.study_member(db_session, client, study, MemberRole.COORDINATOR),
        site_b_coordinator=await factories.study_member(
            db_session, client, study, MemberRole.COORDINATOR, site_b
        ),
        read_only=await factories.study_member(db_session, client, study, MemberRole.READ_ONLY),
        outsider=await factories.study_member(
            db_session, client, await factories.study(db_session), MemberRole.RESEARCHER
        ),
    )


async def mark(db_session: AsyncSession, notification: Notification, **values: Any) -> None:
    await db_session.execute(
        update(Notification).where(Notification.id == notification.id).values(**values)
    )
    await db_session.commit()


async def sent(db_session: AsyncSession, who: Person, **values: Any) -> Notification:
    notification = await notify(db_session, who)
    await mark(
        db_session,
        notification,
        **{
            "status": NotificationStatus.SENT,
            "attempts": 1,
            "claimed_at": utcnow(),
            "sent_at": utcnow(),
            "destination_hint": "a***@example.org",
            "provider_message_id": "<abc@metricis.example.org>",
            **values,
        },
    )
    return notification


async def test_a_participants_notifications_are_listed_with_the_address_masked(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> None:
    crew = await team(db_session, client)
    who = await person(db_session, settings, study=crew.study, site=crew.site_a)
    delivered = await sent(db_session, who)
    upcoming = await notify(db_session, who, send_at=utcnow() + timedelta(days=2))
    url = f"/api/participants/{who.id}/notifications"

    response = await client.get(url, headers=crew.read_only.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert [n["id"] for n in body["data"]] == [str(delivered.id), str(upcoming.id)]
    first = body["data"][0]
    assert first["destination"] == "a***@example.org"
    assert first["participant_code"] == who.code
    assert first["site_id"] == str(crew.site_a.id)
    assert (first["status"], first["channel"], first["kind"]) == ("sent", "email", "visit_reminder")
    assert body["data"][1]["destination"] is None
    assert EMAIL not in response.text
    assert body["pagination"]["total"] == 2
    only_sent = await client.get(url, params={"status": "sent"}, headers=crew.researcher.headers)
    assert [n["id"] for n in only_sent.json()["data"]] == [str(delivered.id)]
    for caller in (crew.site_b_coordinator, crew.outsider):
        hidden = await client.get(url, headers=caller.headers)
        assert hidden.status_code == 404
    wrong = await client.get(url, params={"status": "delivered"}, headers=crew.researcher.headers)
    assert wrong.status_code == 422


async def test_the_study_delivery_log_filters_and_stays_within_a_members_site(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> None:
    crew = await team(db_session, client)
    at_a = await person(db_session, settings, study=crew.study, site=crew.site_a)
    at_b = await person(db_session, settings, study=crew.study, site=crew.site_b)
    visit = uuid.uuid4()
    a_email = await sent(db_session, at_a, visit_id=visit)
    a_sms = await notify(db_session, at_a, channel=NotificationChannel.SMS)
    b_email = await notify(db_session, at_b, send_at=utcnow() + timedelta(days=1))
    url = f"/api/studies/{crew.study.id}/notifications"

    async def ids(caller: factories.Staff, **params: str) -> list[str]:
        response = await client.get(url, params=params, headers=caller.headers)
        assert response.status_code == 200, response.text
        return [n["id"] for n in response.json()["data"]]

    everything = [str(a_email.id), str(a_sms.id), str(b_email.id)]
    assert await ids(crew.coordinator) == everything
    assert await ids(crew.coordinator, order="desc") == everything[::-1]
    assert await ids(crew.coordinator, channel="sms") == [str(a_sms.id)]
    assert await ids(crew.coordinator, status="scheduled") == [str(a_sms.id), str(b_email.id)]
    assert await ids(crew.coordinator, site_id="SITE-B") == [str(b_email.id)]
    assert await ids(crew.coordinator, participant_id=at_a.code) == everything[:2]
    assert await ids(crew.coordinator, visit_id=str(visit)) == [str(a_email.id)]
    tomorrow = (utcnow() + timedelta(hours=12)).isoformat()
    assert await ids(crew.coordinator, **{"from": tomorrow}) == [str(b_email.id)]
    assert await ids(crew.coordinator, to=tomorrow) == everything[:2]
    assert await ids(crew.site_b_coordinator) == [str(b_email.id)]
    # A participant of another site, named by a site-scoped member, is the 422 of an unknown one.
    refused = await client.get(
        url, params={"participant_id": at_a.code}, headers=crew.site_b_coordinator.headers
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["details"]["errors"][0]["field"] == "participant_id"
    unknown_site = await client.get(
        url, params={"site_id": "SITE-Z"}, headers=crew.coordinator.headers
    )
    assert unknown_site.status_code == 422
    naive = await client.get(
        url, params={"from": "2026-01-01T00:00:00"}, headers=crew.coordinator.headers
    )
    assert naive.status_code == 422
    bad_sort = await client.get(url, params={"sort": "body"}, headers=crew.coordinator.headers)
    assert bad_sort.status_code == 422
    assert (await client.get(url, headers=crew.outsider.headers)).status_code == 404


async def test_delivery_statistics_count_by_status_and_channel(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> None:
    crew = await team(db_session, client)
    at_a = await person(db_session, settings, study=crew.study, site=crew.site_a)
    at_b = await person(db_session, settings, study=crew.study, site=crew.site_b)
    await sent(db_session, at_a)
    await sent(db_session, at_a, attempts=3)
    interrupted = await notify(db_session, at_a)
    await mark(
        db_session,
        interrupted,
        status=NotificationStatus.FAILED,
        attempts=1,
        error="interrupted; delivery unknown",
    )
    await notify(db_session, at_b, channel=NotificationChannel.SMS)
    url = f"/api/studies/{crew.study.id}/notifications/stats"

    response = await client.get(url, headers=crew.read_only.headers)

    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["total"] == 4
    assert stats["by_status"] == {
        "scheduled": 1,
        "sending": 0,
        "sent": 2,
        "failed": 1,
        "cancelled": 0,
    }
    assert stats["by_channel"]["email"]["sent"] == 2
    assert stats["by_channel"]["sms"]["scheduled"] == 1
    assert stats["delivery_rate"] == round(2 / 3, 4)
    assert (stats["interrupted"], stats["retried"]) == (1, 1)
    scoped = (await client.get(url, headers=crew.site_b_coordinator.headers)).json()
    assert (scoped["total"], scoped["delivery_rate"]) == (1, None)
    later = (utcnow() + timedelta(days=1)).isoformat()
    assert (await client.get(url, params={"from": later}, headers=crew.researcher.headers)).json()[
        "total"
    ] == 0


async def test_a_resend_is_a_new_audited_notification_due_now(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> None:
    crew = await team(db_session, client)
    who = await person(db_session, settings, study=crew.study, site=crew.site_a)
    failed = await notify(db_session, who)
    await mark(
        db_session,
        failed,
        status=NotificationStatus.FAILED,
        attempts=1,
        error="interrupted; delivery unknown",
    )
    failed_id, text, subject = failed.id, failed.body, failed.subject
    url = f"/api/notifications/{failed_id}/resend"

    response = await client.post(
        url, json={"reason": "participant called: no reminder"}, headers=crew.coordinator.headers
    )

    assert response.status_code == 201, response.text
    resent = response.json()
    assert resent["resend_of"] == str(failed_id)
    assert (resent["status"], resent["attempts"], resent["destination"]) == ("scheduled", 0, None)
    assert (resent["body"], resent["subject"]) == (text, subject)
    row = await reread(db_session, uuid.UUID(resent["id"]))
    assert row.due_at <= utcnow()
    event = await db_session.scalar(
        select(AuditEvent)
        .where(AuditEvent.action == "notification.resend")
        .where(AuditEvent.entity_id == resent["id"])
    )
    assert event is not None
    assert event.reason == "participant called: no reminder"
    assert event.actor_id == str(crew.coordinator.user_id)
    assert event.before is not None and event.before["notification_id"] == str(failed_id)
    assert event.participant_id == who.id

    # Pressed again while the first resend waits: refused, nothing written.
    again = await client.post(url, json={"reason": "again"}, headers=crew.coordinator.headers)
    assert again.status_code == 409
    assert again.json()["error"]["details"]["reason"] == "RESEND_PENDING"
    pending = await client.post(
        f"/api/notifications/{resent['id']}/resend",
        json={"reason": "again"},
        headers=crew.coordinator.headers,
    )
    assert pending.json()["error"]["details"]["reason"] == "NOTIFICATION_PENDING"


async def test_resend_is_refused_where_it_must_be(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> None:
    crew = await team(db_session, client)
    who = await person(db_session, settings, study=crew.study, site=crew.site_a)
    delivered = (await sent(db_session, who)).id
    cancelled_row = await notify(db_session, who)
    cancelled = cancelled_row.id
    await mark(
        db_session,
        cancelled_row,
        status=NotificationStatus.CANCELLED,
        cancel_reason="visit_completed",
    )
    body = {"reason": "check"}

    async def resend(
        notification_id: uuid.UUID, caller: factories.Staff, **kw: Any
    ) -> httpx.Response:
        return await client.post(
            f"/api/notifications/{notification_id}/resend",
            json=kw.get("json", body),
            headers=caller.headers,
        )

    assert (await resend(delivered, crew.read_only)).status_code == 403
    assert (await resend(delivered, crew.site_b_coordinator)).status_code == 404
    assert (await resend(delivered, crew.outsider)).status_code == 404
    assert (await resend(uuid.uuid4(), crew.researcher)).status_code == 404
    assert (await resend(delivered, crew.researcher, json={})).status_code == 422
    refused = await resend(cancelled, crew.researcher)
    assert refused.status_code == 409
    assert refused.json()["error"]["details"] == {
        "reason": "NOTIFICATION_CANCELLED",
        "cancel_reason": "visit_completed",
    }
    db_session.add(
        NotificationOptOut(
            id=uuid.uuid4(),
            participant_id=who.id,
            channel=NotificationChannel.EMAIL,
            source="staff",
            created_at=utcnow(),
        )
    )
    await db_session.commit()
    unsubscribed = await resend(delivered, crew.researcher)
    assert unsubscribed.json()["error"]["details"]["reason"] == "PARTICIPANT_UNSUBSCRIBED"


async def test_opting_out_of_a_channel_cancels_its_scheduled_notifications(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> None:
    crew = await team(db_session, client)
    who = await person(db_session, settings, study=crew.study, site=crew.site_a)
    other = await person(db_session, settings, study=crew.study)
    email = await notify(db_session, who, send_at=utcnow() + timedelta(days=1))
    sms = await notify(
        db_session, who, channel=NotificationChannel.SMS, send_at=utcnow() + timedelta(days=1)
    )
    url = f"/api/participants/{who.id}/notification-preferences"

    response = await client.put(
        url,
        json={"sms_subscribed": False, "reason": "asked by phone"},
        headers=crew.coordinator.headers,
    )

    assert response.status_code == 200, response.text
    preferences = response.json()
    assert (preferences["email_subscribed"], preferences["sms_subscribed"]) == (True, False)
    assert [(o["channel"], o["source"]) for o in preferences["opt_outs"]] == [("sms", "staff")]
    assert (await reread(db_session, sms.id)).status is NotificationStatus.CANCELLED
    assert (await reread(db_session, sms.id)).cancel_reason == "unsubscribed"
    assert (await reread(db_session, email.id)).status is NotificationStatus.SCHEDULED
    events = (
        await db_session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "notification_preferences.update",
                AuditEvent.participant_id == who.id,
            )
        )
    ).all()
    assert len(events) == 1
    assert events[0].after == {
        "email_subscribed": True,
        "sms_subscribed": False,
        "cancelled_notifications": 1,
    }
    assert events[0].reason == "asked by phone"
    # The same again changes nothing and records nothing.
    same = await client.put(url, json={"sms_subscribed": False}, headers=crew.coordinator.headers)
    assert same.status_code == 200
    assert (
        await client.put(url, json={"sms_subscribed": True}, headers=crew.read_only.headers)
    ).status_code == 403
    read = await client.get(url, headers=crew.read_only.headers)
    assert read.json()["sms_subscribed"] is False

    # The participant's own token reads and changes its own choices, and no one else's.
    mine = await factories.participant_headers(db_session, settings, who.id)
    back = await client.put(url, json={"sms_subscribed": True}, headers=mine)
    assert back.status_code == 200, back.text
    assert back.json()["opt_outs"] == []
    theirs = await client.get(
        f"/api/participants/{other.id}/notification-preferences", headers=mine
    )
    assert theirs.status_code == 404


async def test_the_signed_link_unsubscribes_once_without_signing_in(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> None:
    study = await factories.study(db_session)
    who = await person(db_session, settings, study=study)
    pending = await notify(db_session, who, send_at=utcnow() + timedelta(days=1))
    sms = await notify(
        db_session, who, channel=NotificationChannel.SMS, send_at=utcnow() + timedelta(days=1)
    )
    token = unsubscribe_token(settings, who.id, NotificationChannel.EMAIL)

    # A mail client's one-click request (RFC 8058): a form body, no credentials.
    response = await client.post(
        "/api/notifications/unsubscribe",
        params={"token": token},
        data={"List-Unsubscribe": "One-Click"},
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"channel": "email", "unsubscribed": True}
    assert (await reread(db_session, pending.id)).status is NotificationStatus.CANCELLED
    assert (await reread(db_session, sms.id)).status is NotificationStatus.SCHEDULED
    again = await client.post("/api/notifications/unsubscribe", params={"token": token})
    assert again.status_code == 200
    events = (
        await db_session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "notification_preferences.unsubscribe",
                AuditEvent.participant_id == who.id,
            )
        )
    ).all()
    assert len(events) == 1
    assert (events[0].actor_type, events[0].actor_id) == ("participant", str(who.id))
    # Nothing else accepts: another participant's id with this signature, another channel, junk.
    forged = token.replace(who.id.hex, uuid.uuid4().hex)
    other_channel = token.replace(".email.", ".sms.")
    for bad in (forged, other_channel, "nonsense", token[:-1]):
        refused = await client.post("/api/notifications/unsubscribe", params={"token": bad})
        assert refused.status_code == 422, bad
        assert refused.json()["error"]["details"]["errors"][0]["field"] == "token"


async def test_withdrawal_cancels_pending_notifications(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> None:
    crew = await team(db_session, client)
    who = await person(db_session, settings, study=crew.study, site=crew.site_a)
    pending = await notify(db_session, who, send_at=utcnow() + timedelta(days=3))
    delivered = await sent(db_session, who)

    response = await client.post(
        f"/api/participants/{who.id}/withdraw",
        json={"reason": "moved away", "scope": "delete_data"},
        headers=crew.coordinator.headers,
    )

    assert response.status_code == 200, response.text
    cancelled = await reread(db_session, pending.id)
    assert (cancelled.status, cancelled.cancel_reason) == (
        NotificationStatus.CANCELLED,
        "participant_withdrawn",
    )
    kept = await reread(db_session, delivered.id)
    assert kept.status is NotificationStatus.SENT
    # Erasure takes the masked address of past notifications with the address itself.
    assert kept.destination_hint is None
    event = await db_session.scalar(
        select(AuditEvent).where(
            AuditEvent.action == "participant.withdrawn", AuditEvent.participant_id == who.id
        )
    )
    assert event is not None and event.after is not None
    assert event.after["cancelled_notifications"] == 1
