"""Every figure of the dashboard against the known world of conftest.py."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import httpx

from tests.dashboard.conftest import World, get_json


def _by_site(body: dict[str, Any]) -> dict[str | None, dict[str, Any]]:
    return {row["code"]: row for row in body["sites"]}


async def test_study_figures_for_a_researcher(client: httpx.AsyncClient, world: World) -> None:
    body = await get_json(client, f"/api/dashboard/studies/{world.study_id}", world.researcher)

    assert body["study_id"] == str(world.study_id)
    assert body["status"] == "active"
    assert body["timezone"] == "Europe/Paris"
    assert body["site_id"] is None
    assert body["participants"] == {
        "screened": 1,
        "enrolled": 4,
        "withdrawn": 1,
        "completed": 1,
        "total": 7,
    }
    week = body["sessions_this_week"]
    assert datetime.fromisoformat(week.pop("week_start")) == world.week_start
    assert week == {"total": 4, "started": 1, "completed": 2, "abandoned": 1, "expired": 0}
    assert body["visits"] == {
        "upcoming_7_days": 3,
        "overdue": 3,
        "completed": 3,
        "due": 6,
        "adherence": 0.5,
    }

    sites = _by_site(body)
    assert list(sites) == ["NYC", "PAR", None]
    assert sites["PAR"] | {"site_id": None} == {
        "site_id": None,
        "code": "PAR",
        "name": "PAR",
        "participants": 4,
        "visits_completed": 1,
        "visits_due": 3,
        "adherence": 0.3333,
    }
    assert sites["PAR"]["site_id"] == str(world.paris_site_id)
    assert sites["NYC"]["participants"] == 2
    assert (sites["NYC"]["visits_completed"], sites["NYC"]["visits_due"]) == (2, 3)
    assert sites["NYC"]["adherence"] == 0.6667
    assert sites[None] == {
        "site_id": None,
        "code": None,
        "name": None,
        "participants": 1,
        "visits_completed": 0,
        "visits_due": 0,
        "adherence": None,
    }

    quality = body["data_quality"]
    since = datetime.fromisoformat(quality.pop("since"))
    assert abs(world.now - timedelta(days=30) - since) < timedelta(minutes=1)
    assert quality["tasks"] == 6
    assert quality["flags"] == [
        {"code": "ANTICIPATIONS_HIGH", "tasks": 2, "share": 0.3333},
        {"code": "FOCUS_LOST", "tasks": 1, "share": 0.1667},
        {"code": "MISSING_FIELD", "tasks": 1, "share": 0.1667},
    ]
    assert quality["sync_lag"] == {
        "tasks_measured": 5,
        "median_seconds": 30.0,
        "p90_seconds": 3600.0,
        "max_seconds": 3600.0,
    }

    assert body["integrations"] == {
        "webhook_deliveries": {
            "pending": 2,
            "delivering": 0,
            "failed": 1,
            "dead": 1,
            "oldest_undelivered_at": body["integrations"]["webhook_deliveries"][
                "oldest_undelivered_at"
            ],
        },
        "notifications": {"scheduled": 2, "overdue": 1, "sending": 1, "failed": 2},
    }

    assert [v["label"] for v in body["upcoming_visits"]] == [
        "Visit p1-open",
        "Visit n1-open",
        "Visit p1-soon",
    ]
    assert [v["status"] for v in body["upcoming_visits"]] == ["open", "open", "scheduled"]
    assert [v["label"] for v in body["overdue_visits"]] == [
        "Visit p2-late",
        "Visit n1-late",
        "Visit p2-missed",
    ]
    assert {v["status"] for v in body["overdue_visits"]} == {"missed"}
    assert body["overdue_visits"][0]["participant_code"] == "P2"

    activity = body["recent_activity"]
    assert [(a["action"], a["actor_type"], a["actor_role"]) for a in activity] == [
        ("participant.update", "user", "admin"),
        ("visits.status_advanced", "system", None),
        ("session.end", "participant", "participant"),
        ("participant.create", "user", "coordinator"),
        ("battery.update", "user", "researcher"),
    ]
    assert activity[-1]["actor_id"] == str(world.researcher_id)
    assert set(activity[0]) == {
        "study_id",
        "occurred_at",
        "action",
        "category",
        "actor_type",
        "actor_id",
        "actor_role",
        "entity_type",
    }


async def test_oldest_undelivered_webhook(client: httpx.AsyncClient, world: World) -> None:
    body = await get_json(client, f"/api/dashboard/studies/{world.study_id}", world.researcher)
    oldest = body["integrations"]["webhook_deliveries"]["oldest_undelivered_at"]
    age = world.now - datetime.fromisoformat(oldest)
    assert abs(age - timedelta(days=3)) < timedelta(seconds=1)


async def test_no_contact_details_or_audit_secrets(client: httpx.AsyncClient, world: World) -> None:
    for path in ("/api/dashboard", f"/api/dashboard/studies/{world.study_id}"):
        text = json.dumps(await get_json(client, path, world.admin))
        for secret in (
            "@example.org",
            "+33612345678",
            "203.0.113",
            "198.51.100",
            "Typo in the address",
            "not-a-real-secret",
        ):
            assert secret not in text, (path, secret)


async def test_summary_lists_active_studies(client: httpx.AsyncClient, world: World) -> None:
    body = await get_json(client, "/api/dashboard", world.researcher)
    # The draft study the researcher also belongs to is not summarised.
    assert [s["study_id"] for s in body["studies"]] == [str(world.study_id)]
    (summary,) = body["studies"]
    assert summary["participants"]["total"] == 7
    assert summary["sessions_this_week"]["total"] == 4
    assert summary["visits"] == {
        "upcoming_7_days": 3,
        "overdue": 3,
        "completed": 3,
        "due": 6,
        "adherence": 0.5,
    }
    assert "sites" not in summary
    assert [v["label"] for v in body["upcoming_visits"]] == [
        "Visit p1-open",
        "Visit n1-open",
        "Visit p1-soon",
    ]
    assert len(body["overdue_visits"]) == 3
    assert [a["action"] for a in body["recent_activity"]] == [
        "participant.update",
        "visits.status_advanced",
        "session.end",
        "participant.create",
        "battery.update",
    ]
    # The other study's event is not the researcher's to see.
    assert {a["study_id"] for a in body["recent_activity"]} == {str(world.study_id)}


async def test_admin_summary_covers_every_active_study(
    client: httpx.AsyncClient, world: World
) -> None:
    body = await get_json(client, "/api/dashboard", world.admin)
    by_id = {s["study_id"]: s for s in body["studies"]}
    assert str(world.draft_study_id) not in by_id
    # The other study keeps UTC: its week began at Monday 00:00 UTC, after the Paris Monday
    # midnight its only session started at, so that session belongs to last week there.
    other_week = by_id[str(world.other_study_id)]["sessions_this_week"]
    assert datetime.fromisoformat(other_week["week_start"]) > world.week_start
    assert other_week["total"] == 0
    assert by_id[str(world.other_study_id)]["participants"]["enrolled"] == 1
    assert by_id[str(world.study_id)]["participants"]["total"] == 7
