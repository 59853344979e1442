"""A study with a researcher, a coordinator and an outsider, and item bank helpers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models.study import MemberRole
from tests import factories

URL = "/api/item-banks"


@dataclass(frozen=True, slots=True)
class World:
    study_id: uuid.UUID
    researcher: dict[str, str]
    coordinator: dict[str, str]
    outsider: dict[str, str]


@pytest.fixture
async def world(client: httpx.AsyncClient, db_session: AsyncSession) -> World:
    study = await factories.study(db_session)
    other = await factories.study(db_session)
    researcher = await factories.study_member(db_session, client, study, MemberRole.RESEARCHER)
    coordinator = await factories.study_member(db_session, client, study, MemberRole.COORDINATOR)
    outsider = await factories.study_member(db_session, client, other, MemberRole.RESEARCHER)
    return World(study.id, researcher.headers, coordinator.headers, outsider.headers)


def grm_items(n: int = 12) -> list[dict[str, Any]]:
    """PROMIS-style five-category items in two domains."""
    items: list[dict[str, Any]] = []
    for i in range(n):
        shift = -1.5 + 3.0 * i / max(n - 1, 1)
        items.append(
            {
                "id": f"item{i:02d}",
                "a": 1.4 + 0.1 * (i % 5),
                "b": [shift - 1.2, shift - 0.4, shift + 0.4, shift + 1.2],
                "domain": "fatigue" if i % 2 else "mood",
                "text": {"en": f"Question {i}", "fr": f"Question {i} (fr)"},
                "options": {"en": ["Never", "Rarely", "Sometimes", "Often", "Always"]},
            }
        )
    return items


def bank_body(study_id: uuid.UUID, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "study_id": str(study_id),
        "name": "Fatigue and mood",
        "rules": {"target_se": 0.45, "min_items": 2, "max_items": 8, "randomesque": 2},
        "items": grm_items(),
    }
    body.update(overrides)
    return body


async def create_bank(client: httpx.AsyncClient, world: World, **overrides: Any) -> dict[str, Any]:
    response = await client.post(
        URL, headers=world.researcher, json=bank_body(world.study_id, **overrides)
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def field_errors(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    return [item["field"] for item in error["details"]["errors"]]


# ---------------------------------------------------------------------------------------------
# Adaptive tests of participants


@dataclass(frozen=True, slots=True)
class CatWorld:
    """An active study (no consent asked) with a bank, a one-task battery, two participants
    and a running assessment session of the first."""

    study_id: uuid.UUID
    bank_id: str
    battery_id: uuid.UUID
    participant_id: uuid.UUID
    session_id: str  # the first participant's running assessment session
    researcher: dict[str, str]
    coordinator: dict[str, str]
    read_only: dict[str, str]
    participant: dict[str, str]
    other_participant: dict[str, str]

    def sessions_url(self) -> str:
        return f"{URL}/{self.bank_id}/sessions"


async def new_assessment_session(
    client: httpx.AsyncClient, cat_world: CatWorld, headers: dict[str, str] | None = None
) -> str:
    response = await factories.start_session(
        client,
        headers or cat_world.participant,
        cat_world.participant_id,
        cat_world.battery_id,
    )
    assert response.status_code == 201, response.text
    session_id: str = response.json()["session_id"]
    return session_id


@pytest.fixture
async def cat_world(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> CatWorld:
    study = await factories.active_study(db_session)
    researcher = await factories.study_member(db_session, client, study, MemberRole.RESEARCHER)
    coordinator = await factories.study_member(db_session, client, study, MemberRole.COORDINATOR)
    read_only = await factories.study_member(db_session, client, study, MemberRole.READ_ONLY)
    battery_id, _ = await factories.battery(db_session, study, ["simple-rt"])
    first = await factories.participant(db_session, study, "P001")
    second = await factories.participant(db_session, study, "P002")
    response = await client.post(URL, headers=researcher.headers, json=bank_body(study.id))
    assert response.status_code == 201, response.text
    world = CatWorld(
        study_id=study.id,
        bank_id=response.json()["id"],
        battery_id=battery_id,
        participant_id=first.id,
        session_id="",
        researcher=researcher.headers,
        coordinator=coordinator.headers,
        read_only=read_only.headers,
        participant=await factories.participant_headers(db_session, settings, first),
        other_participant=await factories.participant_headers(db_session, settings, second),
    )
    return replace(world, session_id=await new_assessment_session(client, world))


def respond(item_id: str) -> int:
    """A simulated respondent: a fixed category per item (the items have five)."""
    return (int(item_id[-2:]) * 3 + 1) % 5
