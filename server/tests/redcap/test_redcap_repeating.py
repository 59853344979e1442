"""Repeating instruments and repeating events: a session's fields of a repeating instrument go
to REDCap as an instance of it, numbered per record; each session keeps its instance, so a
second push overwrites it instead of adding one; a whole repeating event takes every field of
the session as an instance of the event. The emulator refuses repeating data sent without an
instance, as REDCap does."""

from __future__ import annotations

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models.outbox import DeliveryStatus, DestinationKind, OutboxDelivery
from app.services.outbox.dispatch import SessionFactory
from tests.redcap.conftest import (
    OTHER_TOKEN,
    Team,
    complete_session,
    configure,
    dispatch_now,
    enroll,
)
from tests.redcap.emulator import (
    EmulatedProject,
    Emulator,
    RedcapError,
    check_repeat,
    metadata_rows,
)
from tests.schedules.conftest import by_key, event, visits_of


async def test_a_repeating_instrument_gets_one_instance_per_session_kept_across_pushes(
    client: httpx.AsyncClient,
    team: Team,
    emulator: Emulator,
    db_session: AsyncSession,
    sessions: SessionFactory,
    settings: Settings,
) -> None:
    project = emulator.add(
        EmulatedProject(
            token=OTHER_TOKEN,
            fields=metadata_rows(["record_id", "notes"], form="identity")
            + metadata_rows(["srt_median", "srt_n"], form="reaction_time"),
            repeating=[("", "reaction_time")],
        )
    )
    config = await configure(client, team, emulator, api_token=OTHER_TOKEN)
    assert config["enabled"] is True
    participant = await enroll(client, team, "RP-001")
    first = await complete_session(client, team, participant["id"], seed=1)
    second = await complete_session(client, team, participant["id"], seed=2)
    report = await dispatch_now(sessions, settings)
    assert (report.delivered, report.failed) == (2, 0)

    assert set(project.repeat_records) == {
        ("RP-001", "", "reaction_time", 1),
        ("RP-001", "", "reaction_time", 2),
    }
    assert project.records == {}  # nothing outside the repeating instrument is mapped
    sent = [row for rows in project.imports for row in rows]
    assert all(row["redcap_repeat_instrument"] == "reaction_time" for row in sent)
    instance_of: dict[str, str] = {}
    for rows in project.imports:
        [row] = rows
        instance_of[row["srt_median"]] = row["redcap_repeat_instance"]
    assert sorted(instance_of.values()) == ["1", "2"]
    before = dict(project.repeat_records)

    # Both pushed again (a redelivery after lost answers): each session keeps its instance.
    deliveries = (
        await db_session.scalars(
            select(OutboxDelivery)
            .where(OutboxDelivery.destination == DestinationKind.REDCAP)
            .execution_options(populate_existing=True)
        )
    ).all()
    for delivery in deliveries:
        delivery.status = DeliveryStatus.DEAD
    await db_session.commit()
    synced = await client.post(f"{team.redcap}/sync", headers=team.researcher)
    assert synced.status_code == 202 and synced.json() == {"queued": 2}
    assert (await dispatch_now(sessions, settings)).delivered == 2
    assert len(project.imports) == 4
    assert project.repeat_records == before
    for rows in project.imports[2:]:
        [row] = rows
        assert instance_of[row["srt_median"]] == row["redcap_repeat_instance"]
    log = await client.get(f"{team.redcap}/log", headers=team.researcher)
    assert {entry["session_id"] for entry in log.json()["data"]} == {first, second}


async def test_a_repeating_event_takes_the_sessions_fields_as_instances_of_the_event(
    client: httpx.AsyncClient,
    team: Team,
    emulator: Emulator,
    sessions: SessionFactory,
    settings: Settings,
) -> None:
    project = emulator.add(
        EmulatedProject(
            token=OTHER_TOKEN,
            fields=metadata_rows(["record_id", "srt_median", "srt_n"]),
            events=["baseline_arm_1", "weekly_arm_1"],
            repeating=[("weekly_arm_1", "")],
        )
    )
    schedule = await client.post(
        "/api/schedules",
        headers=team.researcher,
        json={
            "study_id": str(team.study_id),
            "events": [
                event("baseline", 0, team.battery_id, after=40),
                event("weekly", 0, team.battery_id, after=40),
            ],
        },
    )
    assert schedule.status_code == 201, schedule.text
    await configure(
        client,
        team,
        emulator,
        api_token=OTHER_TOKEN,
        event_mapping={"baseline": "baseline_arm_1", "weekly": "weekly_arm_1"},
    )
    participant = await enroll(client, team, "RE-001")
    visits = by_key(await visits_of(client, team.researcher, participant["id"]))
    await complete_session(client, team, participant["id"], visit_id=visits["baseline#1"]["id"])
    await complete_session(
        client, team, participant["id"], seed=4, visit_id=visits["weekly#1"]["id"]
    )
    report = await dispatch_now(sessions, settings)
    assert (report.delivered, report.failed) == (2, 0)
    # The baseline event does not repeat: a plain row; the weekly one is instance 1 of the event.
    assert set(project.records) == {("RE-001", "baseline_arm_1")}
    assert set(project.repeat_records) == {("RE-001", "weekly_arm_1", "", 1)}
    assert set(project.repeat_records[("RE-001", "weekly_arm_1", "", 1)]) == {
        "srt_median",
        "srt_n",
    }


def test_the_emulator_refuses_repeating_data_without_an_instance() -> None:
    """What the pushes are checked against: REDCap's own refusal."""
    project = EmulatedProject(
        token=OTHER_TOKEN,
        fields=metadata_rows(["record_id", "srt_median"], form="reaction_time"),
        repeating=[("", "reaction_time")],
    )
    try:
        check_repeat(project, {"record_id": "X", "srt_median": "1"}, "", {"reaction_time"})
    except RedcapError as refused:
        assert "instance is required" in str(refused)
    else:
        raise AssertionError("accepted repeating data without an instance")
