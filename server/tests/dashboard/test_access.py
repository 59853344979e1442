"""Who reads which dashboard: tokens, study membership, site scope, roles; and an empty study."""

from __future__ import annotations

import uuid
from datetime import datetime

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.user import UserRole
from tests import factories
from tests.dashboard.conftest import World, get_json


def _paths(world: World) -> list[str]:
    return ["/api/dashboard", f"/api/dashboard/studies/{world.study_id}"]


async def test_without_a_token_is_401(client: httpx.AsyncClient, world: World) -> None:
    for path in _paths(world):
        response = await client.get(path)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "UNAUTHORIZED"


async def test_a_participant_token_is_refused(client: httpx.AsyncClient, world: World) -> None:
    for path in _paths(world):
        response = await client.get(path, headers=world.participant_token)
        assert response.status_code == 403
        assert response.json()["error"]["details"]["reason"] == "STAFF_ONLY"


@pytest.mark.parametrize("study", ["other-members", "unknown", "not-a-uuid"])
async def test_an_invisible_study_is_404(
    client: httpx.AsyncClient, world: World, study: str
) -> None:
    path = {
        "other-members": f"/api/dashboard/studies/{world.study_id}",
        "unknown": f"/api/dashboard/studies/{uuid.uuid4()}",
        "not-a-uuid": "/api/dashboard/studies/DASH-1",
    }[study]
    body = await get_json(client, path, world.outsider, 404)
    assert body["error"]["code"] == "NOT_FOUND"


async def test_an_outsider_sees_only_their_study(client: httpx.AsyncClient, world: World) -> None:
    body = await get_json(client, "/api/dashboard", world.outsider)
    assert [s["study_id"] for s in body["studies"]] == [str(world.other_study_id)]
    assert [a["action"] for a in body["recent_activity"]] == ["battery.update"]
    assert body["upcoming_visits"] == body["overdue_visits"] == []


async def test_a_site_scoped_coordinator_counts_their_site(
    client: httpx.AsyncClient, world: World
) -> None:
    body = await get_json(client, f"/api/dashboard/studies/{world.study_id}", world.nyc_coordinator)
    assert body["site_id"] == str(world.nyc_site_id)
    assert body["participants"] == {
        "screened": 0,
        "enrolled": 1,
        "withdrawn": 0,
        "completed": 1,
        "total": 2,
    }
    week = body["sessions_this_week"]
    assert (week["total"], week["completed"], week["started"], week["abandoned"]) == (2, 1, 1, 0)
    assert body["visits"] == {
        "upcoming_7_days": 1,
        "overdue": 1,
        "completed": 2,
        "due": 3,
        "adherence": 0.6667,
    }
    assert [(s["code"], s["participants"], s["visits_due"]) for s in body["sites"]] == [
        ("NYC", 2, 3)
    ]
    quality = body["data_quality"]
    assert quality["tasks"] == 3
    assert quality["flags"] == [
        {"code": "ANTICIPATIONS_HIGH", "tasks": 1, "share": 0.3333},
        {"code": "FOCUS_LOST", "tasks": 1, "share": 0.3333},
    ]
    assert quality["sync_lag"] == {
        "tasks_measured": 2,
        "median_seconds": 40.0,
        "p90_seconds": 3600.0,
        "max_seconds": 3600.0,
    }
    # Webhooks are study configuration, which a coordinator does not read.
    assert body["integrations"] == {
        "webhook_deliveries": None,
        "notifications": {"scheduled": 1, "overdue": 1, "sending": 0, "failed": 1},
    }
    assert [a["action"] for a in body["recent_activity"]] == ["session.end"]
    assert [v["label"] for v in body["upcoming_visits"]] == ["Visit n1-open"]
    assert [v["label"] for v in body["overdue_visits"]] == ["Visit n1-late"]

    summary = await get_json(client, "/api/dashboard", world.nyc_coordinator)
    (study,) = summary["studies"]
    assert study["participants"] == body["participants"]
    assert study["visits"] == body["visits"]
    assert study["sessions_this_week"] == body["sessions_this_week"]
    assert summary["recent_activity"] == body["recent_activity"]
    assert summary["upcoming_visits"] == body["upcoming_visits"]
    assert summary["overdue_visits"] == body["overdue_visits"]


async def test_readers_without_the_audit_capability_see_research_activity_only(
    client: httpx.AsyncClient, world: World
) -> None:
    for headers in (world.read_only, world.coordinator):
        body = await get_json(client, f"/api/dashboard/studies/{world.study_id}", headers)
        assert [a["action"] for a in body["recent_activity"]] == [
            "participant.update",
            "visits.status_advanced",
            "session.end",
            "participant.create",
        ]
        assert body["integrations"]["webhook_deliveries"] is None
        # Everything else is the whole study's.
        assert body["participants"]["total"] == 7
        assert body["data_quality"]["tasks"] == 6


async def test_an_empty_study(client: httpx.AsyncClient, world: World) -> None:
    body = await get_json(
        client, f"/api/dashboard/studies/{world.draft_study_id}", world.researcher
    )
    assert body["status"] == "draft"
    assert body["participants"] == {
        "screened": 0,
        "enrolled": 0,
        "withdrawn": 0,
        "completed": 0,
        "total": 0,
    }
    week = body["sessions_this_week"]
    assert datetime.fromisoformat(week["week_start"]) <= world.now
    assert (week["total"], week["completed"]) == (0, 0)
    assert body["visits"] == {
        "upcoming_7_days": 0,
        "overdue": 0,
        "completed": 0,
        "due": 0,
        "adherence": None,
    }
    assert body["sites"] == []
    body["data_quality"].pop("since")
    assert body["data_quality"] == {
        "tasks": 0,
        "flags": [],
        "sync_lag": {
            "tasks_measured": 0,
            "median_seconds": None,
            "p90_seconds": None,
            "max_seconds": None,
        },
    }
    assert body["integrations"] == {
        "webhook_deliveries": {
            "pending": 0,
            "delivering": 0,
            "failed": 0,
            "dead": 0,
            "oldest_undelivered_at": None,
        },
        "notifications": {"scheduled": 0, "overdue": 0, "sending": 0, "failed": 0},
    }
    assert body["recent_activity"] == body["upcoming_visits"] == body["overdue_visits"] == []


async def test_a_member_of_no_study_gets_an_empty_dashboard(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    loner = await factories.staff(db_session, client, UserRole.RESEARCHER)
    body = await get_json(client, "/api/dashboard", loner.headers)
    assert body["studies"] == body["recent_activity"] == []
    assert body["upcoming_visits"] == body["overdue_visits"] == []
