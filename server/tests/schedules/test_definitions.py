"""Schedule definitions: create, read, validation of events and reminder rules, who may write."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.schedule import ScheduleEvent
from app.schemas.schedules import ReminderRule
from app.services.schedules.definitions import reminder_rules
from tests.schedules.conftest import (
    World,
    audit_events,
    create_schedule,
    email_rule,
    event,
    sms_rule,
    standard_events,
)


async def test_create_and_read_a_schedule(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    created = await create_schedule(
        client, world, reminder_quiet_hours={"start": "21:00", "end": "08:00"}
    )
    assert created["version"] == 1
    assert created["study_id"] == str(world.study_id)
    assert created["name"] == "Visit schedule"
    assert [e["key"] for e in created["events"]] == ["baseline", "week-4", "month-6"]
    baseline = created["events"][0]
    assert baseline == {
        "key": "baseline",
        "label": "Baseline",
        "anchor": "enrollment_date",
        "offset_days": 0,
        "window_before_days": 0,
        "window_after_days": 7,
        "battery_id": str(world.battery_id),
        "repeat": None,
        "reminders": [email_rule()],
    }
    assert created["reminder_quiet_hours"] == {"start": "21:00", "end": "08:00"}
    # No participant yet: nothing to generate.
    assert created["visits"] == {"participants": 0, "created": 0, "updated": 0, "cancelled": 0}

    for headers in (world.read_only, world.coordinator, world.ny_coordinator):
        read = await client.get(f"/api/schedules/{created['id']}", headers=headers)
        assert read.status_code == 200, read.text
        assert read.json()["events"] == created["events"]
        assert read.json()["visits"] is None
    listed = await client.get(
        "/api/schedules", headers=world.read_only, params={"study_id": str(world.study_id)}
    )
    assert [s["id"] for s in listed.json()["data"]] == [created["id"]]

    [event_row] = await audit_events(db_session, "schedule.create", study_id=world.study_id)
    assert event_row.category == "config"
    assert event_row.after is not None and event_row.after["version"] == 1
    assert [e["key"] for e in event_row.after["events"]] == ["baseline", "week-4", "month-6"]


async def test_reminder_rules_are_stored_as_typed_data(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    await create_schedule(client, world)
    rows = {
        row.key: row
        for row in (await db_session.scalars(select(ScheduleEvent))).all()
        if row.battery_id in (world.battery_id, world.second_battery_id)
    }
    [rule] = reminder_rules(rows["week-4"])
    assert isinstance(rule, ReminderRule)
    assert (rule.channel, rule.anchor, rule.offset_days, rule.local_time) == (
        "sms",
        "window_close",
        -1,
        "18:30",
    )
    assert rule.templates["en"].subject is None
    assert reminder_rules(rows["month-6"]) == []


async def test_a_study_has_one_schedule(client: httpx.AsyncClient, world: World) -> None:
    created = await create_schedule(client, world)
    again = await client.post(
        "/api/schedules",
        headers=world.researcher,
        json={"study_id": str(world.study_id), "events": standard_events(world)},
    )
    assert again.status_code == 409, again.text
    assert again.json()["error"]["details"] == {
        "reason": "SCHEDULE_EXISTS",
        "schedule_id": created["id"],
    }


async def test_who_may_create(client: httpx.AsyncClient, world: World) -> None:
    body = {"study_id": str(world.study_id), "events": standard_events(world)}
    for headers in (world.coordinator, world.read_only, world.ny_coordinator):
        response = await client.post("/api/schedules", headers=headers, json=body)
        assert response.status_code == 403, response.text
        assert response.json()["error"]["details"]["required"] == "configure_study"
    outsider = await client.post("/api/schedules", headers=world.outsider, json=body)
    assert outsider.status_code == 404
    admin = await client.post("/api/schedules", headers=world.admin, json=body)
    assert admin.status_code == 201, admin.text
    hidden = await client.get(f"/api/schedules/{admin.json()['id']}", headers=world.outsider)
    assert hidden.status_code == 404
    outsider_list = await client.get("/api/schedules", headers=world.outsider)
    assert str(world.study_id) not in {s["study_id"] for s in outsider_list.json()["data"]}


def _errors(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    errors = response.json()["error"]["details"]["errors"]
    return {error["field"]: error["message"] for error in errors}


async def _post(
    client: httpx.AsyncClient, world: World, events: list[dict[str, Any]], **fields: Any
) -> httpx.Response:
    return await client.post(
        "/api/schedules",
        headers=world.researcher,
        json={"study_id": str(world.study_id), "events": events, **fields},
    )


async def test_events_are_checked_against_the_study(
    client: httpx.AsyncClient, world: World
) -> None:
    errors = _errors(
        await _post(
            client,
            world,
            [
                event("baseline", 0, world.battery_id),
                event("baseline", 7, world.battery_id),
                event("elsewhere", 14, world.other_study_battery_id),
                event("nowhere", 21, uuid.uuid4()),
                event(
                    "daily",
                    30,
                    world.battery_id,
                    before=1,
                    after=1,
                    repeat={"every_days": 2, "count": 5},
                ),
            ],
        )
    )
    assert errors == {
        "events.1.key": "Key 'baseline' is already event 0",
        "events.2.battery_id": "No battery of this study has this id",
        "events.3.battery_id": "No battery of this study has this id",
        "events.4.repeat.every_days": (
            "The windows of two occurrences would overlap: every_days must be more than "
            "window_before_days + window_after_days (2)"
        ),
    }
    too_many = _errors(
        await _post(
            client,
            world,
            [
                event("a", 0, world.battery_id, repeat={"every_days": 1, "count": 600}),
                event("b", 0, world.battery_id, repeat={"every_days": 1, "count": 401}),
            ],
        )
    )
    assert too_many == {"events": "The events make 1001 visits per participant; at most 1000"}


async def test_request_shape_errors_name_the_field(client: httpx.AsyncClient, world: World) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        (event("Bad Key", 0, world.battery_id), "key"),
        (event("late", 0, world.battery_id, before=-1), "window_before_days"),
        (event("x", 0, world.battery_id, repeat={"every_days": 7, "count": 1}), "repeat.count"),
        (event("x", 0, world.battery_id, anchor="surgery"), "anchor"),
        (event("x", 0, world.battery_id, colour="blue"), "colour"),
    ]
    for body, field in cases:
        response = await _post(client, world, [body])
        assert response.status_code == 422, response.text
        fields = [e["field"] for e in response.json()["error"]["details"]["errors"]]
        assert any(f.endswith(f"events.0.{field}") for f in fields), (field, fields)
    empty = await _post(client, world, [])
    assert empty.status_code == 422


async def test_reminder_rules_are_validated(client: httpx.AsyncClient, world: World) -> None:
    def with_rule(rule: dict[str, Any]) -> list[dict[str, Any]]:
        return [event("week-4", 28, world.battery_id, before=3, after=3, reminders=[rule])]

    shape_errors: list[tuple[dict[str, Any], str]] = [
        (
            email_rule(templates={"en": {"subject": "Hi", "body": "Hello {name}"}}),
            "unknown placeholder {name}",
        ),
        (
            email_rule(templates={"en": {"subject": "Hi", "body": "Go to {link.__class__}"}}),
            "unknown placeholder {link.__class__}",
        ),
        (
            email_rule(templates={"en": {"subject": "Hi", "body": "By {window_closes:%d}"}}),
            "takes no format or conversion",
        ),
        (email_rule(templates={"en": {"subject": "Hi", "body": "Unbalanced {"}}), "brace"),
        (email_rule(templates={"en": {"body": "No subject"}}), "an email needs a subject"),
        (
            sms_rule(templates={"en": {"subject": "Hi", "body": "Text"}}),
            "an SMS has no subject",
        ),
        (sms_rule(templates={"en": {"body": "x" * 481}}), "at most 480 characters"),
        (sms_rule(offset_days=0), "use -1 for its last day"),
        (email_rule(local_time="9:00"), "local_time"),
        (email_rule(local_time="24:00"), "local_time"),
        (email_rule(channel="pigeon"), "channel"),
        (email_rule(templates={}), "templates"),
    ]
    for rule, expected in shape_errors:
        response = await _post(client, world, with_rule(rule))
        assert response.status_code == 422, (expected, response.text)
        assert expected in response.text, (expected, response.text)

    study_errors = _errors(
        await _post(
            client,
            world,
            [
                event(
                    "week-4",
                    28,
                    world.battery_id,
                    before=3,
                    after=3,
                    reminders=[
                        email_rule(
                            templates={"fr": {"subject": "Bonjour", "body": "{link}"}},
                        ),
                        email_rule(
                            templates={
                                "en": {"subject": "Hi", "body": "{link}"},
                                "de": {"subject": "Hallo", "body": "{link}"},
                            }
                        ),
                        email_rule(offset_days=7),
                        sms_rule(offset_days=-70),
                        sms_rule(local_time="22:15"),
                    ],
                )
            ],
            reminder_quiet_hours={"start": "21:00", "end": "08:00"},
        )
    )
    assert study_errors == {
        "events.0.reminders.0.templates": (
            "A template in the study's first language ('en') is required: participants whose "
            "language has none receive it"
        ),
        "events.0.reminders.1.templates.de": "'de' is not one of the study's languages (en, fr)",
        "events.0.reminders.2.offset_days": "The reminder would come after the window has closed",
        "events.0.reminders.3.offset_days": (
            "A reminder comes at most 60 days before the window opens"
        ),
        "events.0.reminders.4.local_time": "22:15 is within the quiet hours (21:00 to 08:00)",
    }
    # The last day of a 7-day window is day 6 from opening, and day -1 from closing.
    fine = await _post(
        client,
        world,
        [
            event(
                "week-4",
                28,
                world.battery_id,
                before=3,
                after=3,
                reminders=[email_rule(offset_days=6), sms_rule(offset_days=-7, local_time="08:00")],
            )
        ],
        reminder_quiet_hours={"start": "21:00", "end": "08:00"},
    )
    assert fine.status_code == 201, fine.text


async def test_quiet_hours_must_be_a_span(client: httpx.AsyncClient, world: World) -> None:
    response = await _post(
        client,
        world,
        standard_events(world),
        reminder_quiet_hours={"start": "21:00", "end": "21:00"},
    )
    assert response.status_code == 422
    assert "start and end are the same time" in response.text


async def test_an_archived_study_keeps_its_schedule(
    client: httpx.AsyncClient, world: World
) -> None:
    created = await create_schedule(client, world)
    archived = await client.post(
        f"/api/studies/{world.study_id}/status",
        headers=world.researcher,
        json={"status": "archived"},
    )
    assert archived.status_code == 200, archived.text
    patched = await client.patch(
        f"/api/schedules/{created['id']}", headers=world.researcher, json={"name": "Renamed"}
    )
    assert patched.status_code == 409, patched.text
