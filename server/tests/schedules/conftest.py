"""A study with two sites in different time zones, its staff, batteries and API helpers for
schedules and visits. Everything goes through the API except what has no route (users, the
study's status), as the other suites do."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.models.audit import AuditEvent
from app.models.study import ConsentMode, MemberRole, StudyStatus
from app.models.user import UserRole
from app.services.schedules.timing import local_date
from tests import factories

PARIS = "Europe/Paris"
NEW_YORK = "America/New_York"


@dataclass(frozen=True, slots=True)
class World:
    study_id: uuid.UUID
    other_study_id: uuid.UUID
    paris_site_id: uuid.UUID
    ny_site_id: uuid.UUID
    battery_id: uuid.UUID
    second_battery_id: uuid.UUID
    other_study_battery_id: uuid.UUID
    admin: dict[str, str]
    researcher: dict[str, str]
    coordinator: dict[str, str]
    ny_coordinator: dict[str, str]  # site-scoped to New York
    read_only: dict[str, str]
    outsider: dict[str, str]  # researcher of the other study


@pytest.fixture
async def world(client: httpx.AsyncClient, db_session: AsyncSession) -> World:
    return await build_world(client, db_session)


async def build_world(client: httpx.AsyncClient, db_session: AsyncSession) -> World:
    study = await factories.study(
        db_session,
        languages=["en", "fr"],
        status=StudyStatus.ACTIVE,
        consent_mode=ConsentMode.NONE,
    )
    other = await factories.study(db_session)
    paris = await factories.site(db_session, study, "PARIS", PARIS)
    new_york = await factories.site(db_session, study, "NYC", NEW_YORK)
    battery_id, _ = await factories.battery(db_session, study, ["simple-rt"], name="Main")
    second_battery_id, _ = await factories.battery(db_session, study, ["flanker"], name="Second")
    other_battery_id, _ = await factories.battery(db_session, other, ["simple-rt"])

    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    researcher = await factories.study_member(db_session, client, study, MemberRole.RESEARCHER)
    coordinator = await factories.study_member(db_session, client, study, MemberRole.COORDINATOR)
    ny_coordinator = await factories.study_member(
        db_session, client, study, MemberRole.COORDINATOR, new_york
    )
    read_only = await factories.study_member(db_session, client, study, MemberRole.READ_ONLY)
    outsider = await factories.study_member(db_session, client, other, MemberRole.RESEARCHER)
    return World(
        study_id=study.id,
        other_study_id=other.id,
        paris_site_id=paris.id,
        ny_site_id=new_york.id,
        battery_id=battery_id,
        second_battery_id=second_battery_id,
        other_study_battery_id=other_battery_id,
        admin=admin.headers,
        researcher=researcher.headers,
        coordinator=coordinator.headers,
        ny_coordinator=ny_coordinator.headers,
        read_only=read_only.headers,
        outsider=outsider.headers,
    )


def event(
    key: str,
    offset_days: int,
    battery_id: uuid.UUID,
    *,
    before: int = 0,
    after: int = 0,
    label: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "key": key,
        "label": label or key.replace("-", " ").title(),
        "offset_days": offset_days,
        "window_before_days": before,
        "window_after_days": after,
        "battery_id": str(battery_id),
        **extra,
    }


def email_rule(**overrides: Any) -> dict[str, Any]:
    return {
        "channel": "email",
        "anchor": "window_open",
        "offset_days": 0,
        "local_time": "09:00",
        "templates": {
            "en": {
                "subject": "Your {visit_label} is open",
                "body": "Hello {participant_code}, please complete it by {window_closes}: {link}",
            },
            "fr": {
                "subject": "Votre visite {visit_label} est ouverte",
                "body": "Bonjour {participant_code}, avant le {window_closes} : {link}",
            },
        },
        **overrides,
    }


def sms_rule(**overrides: Any) -> dict[str, Any]:
    return {
        "channel": "sms",
        "anchor": "window_close",
        "offset_days": -1,
        "local_time": "18:30",
        "templates": {"en": {"body": "{visit_label} closes tomorrow. {access_instructions}"}},
        **overrides,
    }


def standard_events(world: World) -> list[dict[str, Any]]:
    """Baseline (day 0, a week to do it), week 4 (±3 days), month 6 (±14 days)."""
    return [
        event("baseline", 0, world.battery_id, after=7, reminders=[email_rule()]),
        event("week-4", 28, world.battery_id, before=3, after=3, reminders=[sms_rule()]),
        event("month-6", 182, world.second_battery_id, before=14, after=14),
    ]


async def create_schedule(
    client: httpx.AsyncClient,
    world: World,
    events: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    response = await client.post(
        "/api/schedules",
        headers=world.researcher,
        json={
            "study_id": str(world.study_id),
            "events": events if events is not None else standard_events(world),
            **fields,
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def patch_schedule(
    client: httpx.AsyncClient, world: World, schedule_id: str, **fields: Any
) -> dict[str, Any]:
    response = await client.patch(
        f"/api/schedules/{schedule_id}", headers=world.researcher, json=fields
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def today_in(timezone: str) -> date:
    return local_date(utcnow(), timezone)


def days_ago(days: int, timezone: str = PARIS) -> str:
    return (today_in(timezone) - timedelta(days=days)).isoformat()


async def enroll(
    client: httpx.AsyncClient,
    world: World,
    code: str,
    *,
    site: str = "PARIS",
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    response = await client.post(
        "/api/participants",
        headers=headers or world.coordinator,
        json={"study_id": str(world.study_id), "participant_id": code, "site_id": site, **fields},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def visits_of(
    client: httpx.AsyncClient, headers: dict[str, str], participant_id: str, **params: str
) -> list[dict[str, Any]]:
    response = await client.get(
        "/api/schedules/visits",
        headers=headers,
        params={"participant_id": participant_id, "per_page": "100", **params},
    )
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def by_key(visits: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{v['event_key']}#{v['occurrence']}": v for v in visits}


async def participant_token(
    db_session: AsyncSession, settings: Settings, participant_id: str
) -> dict[str, str]:
    """The headers of a participant enrolled through the API (its id as the API answered it)."""
    return await factories.participant_headers(db_session, settings, uuid.UUID(participant_id))


async def audit_events(
    db_session: AsyncSession, action: str, *, study_id: uuid.UUID | None = None
) -> list[AuditEvent]:
    statement = select(AuditEvent).where(AuditEvent.action == action)
    if study_id is not None:
        statement = statement.where(AuditEvent.study_id == study_id)
    return list((await db_session.scalars(statement.order_by(AuditEvent.sequence))).all())
