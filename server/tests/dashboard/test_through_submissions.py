"""The figures follow what the API stores: sessions started and data submitted through it."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.models.study import MemberRole
from tests import factories
from tests.dashboard.conftest import get_json


async def test_a_submission_shows_in_sessions_flags_and_sync_lag(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    study = await factories.active_study(db_session)
    coordinator = await factories.study_member(db_session, client, study, MemberRole.COORDINATOR)
    battery_id, _ = await factories.battery(db_session, study, ["simple-rt"])
    person = await factories.participant(db_session, study, "E1")
    path = f"/api/dashboard/studies/{study.id}"

    before = await get_json(client, path, coordinator.headers)
    assert before["sessions_this_week"]["total"] == 0
    assert before["data_quality"]["tasks"] == 0

    started = await factories.start_session(client, coordinator.headers, person.id, battery_id)
    assert started.status_code == 201, started.text
    session_id = started.json()["session_id"]
    # Eight of ten responses under 100 ms: ANTICIPATIONS_HIGH. Finished two minutes ago on
    # the device, received now: a sync lag of about 120 s.
    submitted = await factories.submit(
        client,
        coordinator.headers,
        session_id,
        {
            "trials": factories.simple_rt_trials(10, base=40.0),
            "completed_at": (utcnow() - timedelta(seconds=120)).isoformat(),
        },
    )
    assert submitted.status_code == 201, submitted.text
    assert "ANTICIPATIONS_HIGH" in {flag["code"] for flag in submitted.json()["flags"]}

    after = await get_json(client, path, coordinator.headers)
    assert after["sessions_this_week"]["total"] == 1
    assert after["sessions_this_week"]["started"] == 1
    assert after["participants"]["enrolled"] == 1
    quality = after["data_quality"]
    assert quality["tasks"] == 1
    assert {"code": "ANTICIPATIONS_HIGH", "tasks": 1, "share": 1.0} in quality["flags"]
    lag = quality["sync_lag"]
    assert lag["tasks_measured"] == 1
    assert 120.0 <= lag["median_seconds"] == lag["p90_seconds"] == lag["max_seconds"] < 180.0
    assert [a["action"] for a in after["recent_activity"]][:2] == [
        "submission.accepted",
        "session.start",
    ]
    assert {a["actor_role"] for a in after["recent_activity"][:2]} == {"coordinator"}
