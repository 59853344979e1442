"""Completed sessions pushed to REDCap through the outbox: the dispatcher imports each session's
mapped scores through PyCap over real HTTP into the emulator; a session pushed twice overwrites
its record; REDCap down is retried and delivered later; a refused token fails with REDCap's
words in the push log; sites with their own project; visits on longitudinal events."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models.outbox import DeliveryStatus, DestinationKind, OutboxDelivery, OutboxEvent
from app.services.outbox.dispatch import SessionFactory
from app.services.webhooks.dispatcher import dispatch_webhooks
from tests.redcap.conftest import (
    OTHER_TOKEN,
    TOKEN,
    Team,
    complete_session,
    configure,
    dispatch_now,
    enroll,
    make_due,
    push_log,
)
from tests.redcap.emulator import EmulatedProject, Emulator, metadata_rows
from tests.schedules.conftest import by_key, event, visits_of
from tests.webhooks.receiver import Receiver


async def _redcap_deliveries(db_session: AsyncSession) -> list[OutboxDelivery]:
    return list(
        (
            await db_session.scalars(
                select(OutboxDelivery)
                .where(OutboxDelivery.destination == DestinationKind.REDCAP)
                .execution_options(populate_existing=True)
            )
        ).all()
    )


async def _scores(db_session: AsyncSession, session_id: str) -> dict[str, Any]:
    """The simple RT scores of a session as its `session.completed` event carries them."""
    for row in await db_session.scalars(select(OutboxEvent)):
        if row.payload.get("session_id") == session_id:
            [task] = [t for t in row.payload["tasks"] if t["task"] == "simple-rt"]
            scores: dict[str, Any] = task["scores"]
            return scores
    raise AssertionError("no event for the session")


async def test_a_completed_session_becomes_a_record_and_a_second_push_overwrites_it(
    client: httpx.AsyncClient,
    team: Team,
    emulator: Emulator,
    db_session: AsyncSession,
    sessions: SessionFactory,
    settings: Settings,
) -> None:
    await configure(client, team, emulator)
    participant = await enroll(client, team, "RC-001")
    session_id = await complete_session(client, team, participant["id"])
    [delivery] = await _redcap_deliveries(db_session)
    assert delivery.status is DeliveryStatus.PENDING

    report = await dispatch_now(sessions, settings)
    assert (report.attempts, report.delivered) == (1, 1)
    project = emulator.projects[TOKEN]
    scores = await _scores(db_session, session_id)
    expected = {"srt_median": f"{scores['median_rt']:g}", "srt_n": str(scores["n_responses"])}
    assert project.records == {("RC-001", ""): expected}
    assert project.imports[0] == [{"record_id": "RC-001", **expected}]

    # Sent again (a redelivery after a lost answer): the same record, the same values.
    delivery.status = DeliveryStatus.DEAD
    await db_session.commit()
    synced = await client.post(f"{team.redcap}/sync", headers=team.researcher)
    assert synced.status_code == 202 and synced.json() == {"queued": 1}
    assert (await dispatch_now(sessions, settings)).delivered == 1
    assert len(project.imports) == 2
    assert project.records == {("RC-001", ""): expected}

    [entry] = await push_log(client, team)
    assert entry["status"] == "delivered" and entry["session_id"] == session_id
    assert entry["participant_code"] == "RC-001" and entry["attempts"] == 2
    assert [a["outcome"] for a in entry["attempt_log"]] == ["delivered", "delivered"]

    # A session without any mapped task is not sent at all.
    await client.put(
        f"{team.redcap}/config",
        headers=team.researcher,
        json={
            "api_url": emulator.url,
            "record_id_field": "record_id",
            "field_mapping": {"digit-span.span": "ds_span"},
        },
    )
    await complete_session(client, team, participant["id"], seed=3)
    assert len(await _redcap_deliveries(db_session)) == 1


async def test_redcap_down_is_retried_and_the_session_delivered_later(
    client: httpx.AsyncClient,
    team: Team,
    emulator: Emulator,
    db_session: AsyncSession,
    sessions: SessionFactory,
    settings: Settings,
) -> None:
    await configure(client, team, emulator)
    participant = await enroll(client, team, "RC-002")
    await complete_session(client, team, participant["id"])

    emulator.stop()
    first = await dispatch_now(sessions, settings)
    assert (first.attempts, first.failed) == (1, 1)
    emulator.start()
    emulator.failing = True
    assert await make_due(db_session) == 1
    second = await dispatch_now(sessions, settings)
    assert (second.attempts, second.failed) == (1, 1)
    emulator.failing = False
    assert await make_due(db_session) == 1
    third = await dispatch_now(sessions, settings)
    assert third.delivered == 1

    [entry] = await push_log(client, team)
    assert entry["status"] == "delivered" and entry["attempts"] == 3
    outcomes = [(a["outcome"], a["status_code"]) for a in entry["attempt_log"]]
    assert outcomes == [("connection_error", None), ("http_error", 500), ("delivered", 200)]
    assert set(emulator.projects[TOKEN].records) == {("RC-002", "")}


async def test_a_refused_token_fails_with_redcaps_words_and_ends_dead(
    client: httpx.AsyncClient,
    team: Team,
    emulator: Emulator,
    db_session: AsyncSession,
    sessions: SessionFactory,
    settings: Settings,
) -> None:
    await configure(client, team, emulator)
    participant = await enroll(client, team, "RC-003")
    await complete_session(client, team, participant["id"])
    emulator.projects.pop(TOKEN)  # the token was revoked in REDCap

    for _ in range(settings.OUTBOX_MAX_ATTEMPTS):
        await make_due(db_session)
        await dispatch_now(sessions, settings)
    [entry] = await push_log(client, team)
    assert entry["status"] == "dead" and entry["attempts"] == settings.OUTBOX_MAX_ATTEMPTS
    assert entry["last_status_code"] == 403
    assert entry["last_error"] == "HTTP 403: REDCap: You do not have permissions to use the API"
    assert all(a["outcome"] == "http_error" for a in entry["attempt_log"])
    assert TOKEN not in str(entry)
    assert await push_log(client, team, status="failed") == []
    assert len(await push_log(client, team, status="dead")) == 1


async def test_a_site_with_its_own_project_gets_its_participants_sessions(
    client: httpx.AsyncClient,
    team: Team,
    emulator: Emulator,
    db_session: AsyncSession,
    sessions: SessionFactory,
    settings: Settings,
) -> None:
    site_project = emulator.add(
        EmulatedProject(token=OTHER_TOKEN, fields=metadata_rows(["record_id", "rt"]))
    )
    await configure(client, team, emulator)
    await configure(
        client,
        team,
        emulator,
        site_id=team.site_id,
        api_token=OTHER_TOKEN,
        field_mapping={"simple-rt.median_rt": "rt"},
    )
    at_site = await enroll(client, team, "LY-001", site="LYON")
    no_site = await enroll(client, team, "RC-004")
    await complete_session(client, team, at_site["id"])
    await complete_session(client, team, no_site["id"], seed=2)
    assert (await dispatch_now(sessions, settings)).delivered == 2

    assert set(site_project.records) == {("LY-001", "")}
    assert set(site_project.records[("LY-001", "")]) == {"rt"}
    assert set(emulator.projects[TOKEN].records) == {("RC-004", "")}

    # A disabled site project sends nothing, and does not fall back to the study's.
    await configure(
        client,
        team,
        emulator,
        site_id=team.site_id,
        field_mapping={"simple-rt.median_rt": "rt"},
        enabled=False,
        api_token=OTHER_TOKEN,
    )
    await complete_session(client, team, at_site["id"], seed=4)
    assert len(await _redcap_deliveries(db_session)) == 2


async def test_sessions_of_two_visits_land_on_their_events_and_the_webhook_gets_them_signed(
    client: httpx.AsyncClient,
    team: Team,
    emulator: Emulator,
    db_session: AsyncSession,
    sessions: SessionFactory,
    settings: Settings,
) -> None:
    receiver = Receiver().start()
    webhook = await client.post(
        f"/api/studies/{team.study_id}/webhooks",
        headers=team.researcher,
        json={"url": receiver.url(), "events": ["session.completed"]},
    )
    assert webhook.status_code == 201, webhook.text
    receiver.secrets.append(webhook.json()["secret"])
    project = emulator.add(
        EmulatedProject(
            token=OTHER_TOKEN,
            fields=metadata_rows(["record_id", "srt_median", "srt_n"]),
            events=["baseline_arm_1", "week_4_arm_1"],
        )
    )
    schedule = await client.post(
        "/api/schedules",
        headers=team.researcher,
        json={
            "study_id": str(team.study_id),
            "events": [
                event("baseline", 0, team.battery_id, after=40),
                event("week-4", 28, team.battery_id, before=28, after=3),
            ],
        },
    )
    assert schedule.status_code == 201, schedule.text
    await configure(
        client,
        team,
        emulator,
        api_token=OTHER_TOKEN,
        event_mapping={"baseline": "baseline_arm_1", "week-4": "week_4_arm_1"},
    )
    participant = await enroll(client, team, "LG-001")
    visits = by_key(await visits_of(client, team.researcher, participant["id"]))
    baseline = await complete_session(
        client, team, participant["id"], visit_id=visits["baseline#1"]["id"]
    )
    week4 = await complete_session(
        client, team, participant["id"], seed=9, visit_id=visits["week-4#1"]["id"]
    )
    # A session outside any visit has no event in a longitudinal project: a clear failure.
    await complete_session(client, team, participant["id"], seed=5)
    report = await dispatch_now(sessions, settings)
    assert (report.delivered, report.failed) == (2, 1)

    for session_id, event_name in ((baseline, "baseline_arm_1"), (week4, "week_4_arm_1")):
        scores = await _scores(db_session, session_id)
        assert project.records[("LG-001", event_name)]["srt_median"] == f"{scores['median_rt']:g}"
    assert len(project.records) == 2
    [failed] = await push_log(client, team, status="failed")
    assert failed["attempt_log"][0]["outcome"] == "configuration_error"
    assert "no visit" in failed["last_error"]
    # One event per session, with one delivery to REDCap and one to the webhook.
    assert await db_session.scalar(select(func.count()).select_from(OutboxEvent)) == 3
    count = await db_session.scalar(select(func.count()).select_from(OutboxDelivery))
    assert count == 6
    try:
        hooks = await dispatch_webhooks(sessions, settings, concurrency=1)
    finally:
        receiver.stop()
    assert hooks.delivered == 3
    posts = receiver.posts()
    assert len(posts) == 3 and all(request.verified for request in posts)
    assert {request.json()["data"]["session_id"] for request in posts} >= {baseline, week4}
