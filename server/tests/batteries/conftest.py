"""A study with a member of each role, an outsider from another study, and battery helpers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import AuditEvent
from app.models.study import MemberRole
from app.models.user import UserRole
from tests import factories

URL = "/api/batteries"

TASKS: list[dict[str, Any]] = [
    {"module_id": "simple-rt", "config": {"n_trials": 30}},
    {"module_id": "cpt", "config": {}},
    {"module_id": "digit-span"},
]


@dataclass(frozen=True, slots=True)
class World:
    study_id: uuid.UUID
    other_study_id: uuid.UUID
    researcher: dict[str, str]
    coordinator: dict[str, str]
    read_only: dict[str, str]
    outsider: dict[str, str]
    admin: dict[str, str]
    researcher_id: uuid.UUID


@pytest.fixture
async def world(client: httpx.AsyncClient, db_session: AsyncSession) -> World:
    study = await factories.study(db_session)
    other = await factories.study(db_session)
    study_id, other_id = study.id, other.id
    researcher = await factories.study_member(db_session, client, study, MemberRole.RESEARCHER)
    coordinator = await factories.study_member(db_session, client, study, MemberRole.COORDINATOR)
    read_only = await factories.study_member(db_session, client, study, MemberRole.READ_ONLY)
    outsider = await factories.study_member(db_session, client, other, MemberRole.RESEARCHER)
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    return World(
        study_id=study_id,
        other_study_id=other_id,
        researcher=researcher.headers,
        coordinator=coordinator.headers,
        read_only=read_only.headers,
        outsider=outsider.headers,
        admin=admin.headers,
        researcher_id=researcher.user_id,
    )


def battery_body(study_id: uuid.UUID, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "study_id": str(study_id),
        "name": "Baseline",
        "description": "Attention and memory",
        "tasks": TASKS,
        "estimated_minutes": 25,
    }
    body.update(overrides)
    return body


async def create_battery(
    client: httpx.AsyncClient, world: World, **overrides: Any
) -> dict[str, Any]:
    response = await client.post(
        URL, headers=world.researcher, json=battery_body(world.study_id, **overrides)
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def audit_events(
    db_session: AsyncSession,
    entity_id: str | uuid.UUID | None = None,
    action: str | None = None,
    *,
    study_id: uuid.UUID | None = None,
) -> list[AuditEvent]:
    """Battery events of one battery or one study (the concurrency test leaves committed ones)."""
    assert entity_id is not None or study_id is not None
    statement = select(AuditEvent).where(AuditEvent.entity_type == "battery")
    if study_id is not None:
        statement = statement.where(AuditEvent.study_id == study_id)
    if entity_id is not None:
        statement = statement.where(AuditEvent.entity_id == str(entity_id))
    if action is not None:
        statement = statement.where(AuditEvent.action == action)
    return list((await db_session.scalars(statement.order_by(AuditEvent.sequence))).all())


def field_errors(response: httpx.Response) -> list[tuple[str, str]]:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    return [(item["field"], item["message"]) for item in error["details"]["errors"]]
