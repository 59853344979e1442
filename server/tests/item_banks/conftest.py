"""A study with a researcher, a coordinator and an outsider, and item bank helpers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

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
