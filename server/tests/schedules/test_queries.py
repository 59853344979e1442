"""Reading visits: a participant's, a study's upcoming and overdue ones by site, paged; and who
sees which (other studies, other sites, participant tokens)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from tests.schedules.conftest import (
    NEW_YORK,
    World,
    by_key,
    create_schedule,
    days_ago,
    enroll,
    event,
    participant_token,
    today_in,
    visits_of,
)


@dataclass(frozen=True, slots=True)
class Cohort:
    """Paris: A enrolled today, B 24 days ago; New York: C today, D 10 days ago."""

    ids: dict[str, str]
    visits: dict[str, dict[str, dict[str, Any]]]

    def visit(self, code: str, key: str) -> str:
        return str(self.visits[code][key]["id"])


@pytest.fixture
async def cohort(client: httpx.AsyncClient, world: World) -> Cohort:
    await create_schedule(client, world)
    enrolled = {
        "A": await enroll(client, world, "A"),
        "B": await enroll(client, world, "B", enrollment_date=days_ago(24)),
        "C": await enroll(client, world, "C", site="NYC"),
        "D": await enroll(client, world, "D", site="NYC", enrollment_date=days_ago(10, NEW_YORK)),
    }
    return Cohort(
        ids={code: p["id"] for code, p in enrolled.items()},
        visits={
            code: by_key(await visits_of(client, world.coordinator, p["id"]))
            for code, p in enrolled.items()
        },
    )


async def _list(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: str
) -> httpx.Response:
    return await client.get(f"/api/schedules/visits{path}", headers=headers, params=params)


def _ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [v["id"] for v in response.json()["data"]]


async def test_upcoming_by_study_and_site(
    client: httpx.AsyncClient, world: World, cohort: Cohort
) -> None:
    study = str(world.study_id)
    week = _ids(await _list(client, "/upcoming", world.coordinator, study_id=study))
    # Open now (A's and C's baselines) or opening within 7 days (B's week 4 opens tomorrow).
    assert set(week) == {
        cohort.visit("A", "baseline#1"),
        cohort.visit("B", "week-4#1"),
        cohort.visit("C", "baseline#1"),
    }
    paris = _ids(
        await _list(client, "/upcoming", world.coordinator, study_id=study, site_id="PARIS")
    )
    assert set(paris) == {cohort.visit("A", "baseline#1"), cohort.visit("B", "week-4#1")}
    by_uuid = _ids(await _list(client, "/upcoming", world.read_only, site_id=str(world.ny_site_id)))
    assert set(by_uuid) == {cohort.visit("C", "baseline#1")}
    month = _ids(await _list(client, "/upcoming", world.coordinator, study_id=study, days="30"))
    assert set(month) == set(week) | {
        cohort.visit("A", "week-4#1"),
        cohort.visit("C", "week-4#1"),
        cohort.visit("D", "week-4#1"),
    }


async def test_overdue_by_study_and_site(
    client: httpx.AsyncClient, world: World, cohort: Cohort
) -> None:
    study = str(world.study_id)
    overdue = await _list(client, "/overdue", world.coordinator, study_id=study)
    assert set(_ids(overdue)) == {cohort.visit("B", "baseline#1"), cohort.visit("D", "baseline#1")}
    assert {v["status"] for v in overdue.json()["data"]} == {"missed"}
    new_york = _ids(
        await _list(client, "/overdue", world.coordinator, study_id=study, site_id="NYC")
    )
    assert new_york == [cohort.visit("D", "baseline#1")]


async def test_a_site_scoped_member_sees_only_their_site(
    client: httpx.AsyncClient, world: World, cohort: Cohort
) -> None:
    study = str(world.study_id)
    headers = world.ny_coordinator
    assert set(_ids(await _list(client, "/upcoming", headers, study_id=study))) == {
        cohort.visit("C", "baseline#1")
    }
    assert _ids(await _list(client, "/overdue", headers)) == [cohort.visit("D", "baseline#1")]
    assert _ids(await _list(client, "/upcoming", headers, study_id=study, site_id="PARIS")) == []
    listed = _ids(await _list(client, "", headers, study_id=study, per_page="100"))
    assert set(listed) == {
        str(v["id"]) for code in ("C", "D") for v in cohort.visits[code].values()
    }
    hidden = await client.get(
        f"/api/schedules/visits/{cohort.visit('A', 'baseline#1')}", headers=headers
    )
    assert hidden.status_code == 404
    named = await _list(client, "", headers, study_id=study, participant_id="A")
    assert named.status_code == 422
    assert named.json()["error"]["details"]["errors"][0]["field"] == "participant_id"


async def test_other_studies_see_nothing(
    client: httpx.AsyncClient, world: World, cohort: Cohort
) -> None:
    study = str(world.study_id)
    for path in ("", "/upcoming", "/overdue"):
        refused = await _list(client, path, world.outsider, study_id=study)
        assert refused.status_code == 404, (path, refused.text)
        mine = _ids(await _list(client, path, world.outsider))
        assert not set(mine) & {
            str(v["id"]) for visits in cohort.visits.values() for v in visits.values()
        }
    visit = await client.get(
        f"/api/schedules/visits/{cohort.visit('A', 'baseline#1')}", headers=world.outsider
    )
    assert visit.status_code == 404
    unknown_site = await _list(client, "/upcoming", world.outsider, site_id=str(world.ny_site_id))
    assert unknown_site.status_code == 422
    assert unknown_site.json()["error"]["details"]["errors"][0]["field"] == "site_id"


async def test_participant_tokens_read_their_own_visits_only(
    client: httpx.AsyncClient,
    db_session: AsyncSession,
    settings: Settings,
    world: World,
    cohort: Cohort,
) -> None:
    token = await participant_token(db_session, settings, cohort.ids["A"])
    own = _ids(await _list(client, "", token, per_page="100"))
    assert set(own) == {str(v["id"]) for v in cohort.visits["A"].values()}
    assert _ids(await _list(client, "", token, study_id=str(world.study_id))) == own
    other = await _list(client, "", token, participant_id="B", study_id=str(world.study_id))
    assert other.status_code == 422
    elsewhere = await _list(client, "", token, study_id=str(world.other_study_id))
    assert elsewhere.status_code == 404
    read = await client.get(f"/api/schedules/visits/{cohort.visit('A', 'week-4#1')}", headers=token)
    assert read.status_code == 200
    not_mine = await client.get(
        f"/api/schedules/visits/{cohort.visit('B', 'week-4#1')}", headers=token
    )
    assert not_mine.status_code == 404
    for path in ("/upcoming", "/overdue"):
        staff_only = await _list(client, path, token)
        assert staff_only.status_code == 403
        assert staff_only.json()["error"]["details"]["reason"] == "STAFF_ONLY"
    reschedule = await client.post(
        f"/api/schedules/visits/{cohort.visit('A', 'week-4#1')}/reschedule",
        headers=token,
        json={"due_date": today_in("Europe/Paris").isoformat(), "reason": "me"},
    )
    assert reschedule.status_code == 403


async def test_filters_and_pages(client: httpx.AsyncClient, world: World, cohort: Cohort) -> None:
    study = str(world.study_id)
    missed = _ids(await _list(client, "", world.coordinator, study_id=study, status="missed"))
    assert set(missed) == {cohort.visit("B", "baseline#1"), cohort.visit("D", "baseline#1")}
    opened = _ids(await _list(client, "", world.coordinator, study_id=study, status="open"))
    assert set(opened) == {cohort.visit("A", "baseline#1"), cohort.visit("C", "baseline#1")}
    bad = await _list(client, "", world.coordinator, study_id=study, status="late")
    assert bad.status_code == 422

    today = today_in("Europe/Paris")
    due_soon = _ids(
        await _list(
            client,
            "",
            world.coordinator,
            study_id=study,
            site_id="PARIS",
            **{
                "from": (today - timedelta(days=1)).isoformat(),
                "to": (today + timedelta(days=5)).isoformat(),
            },
        )
    )
    # A's baseline is due today, B's week 4 on day 28 = in four days.
    assert set(due_soon) == {cohort.visit("A", "baseline#1"), cohort.visit("B", "week-4#1")}

    pages = []
    for page in (1, 2, 3, 4):
        response = await _list(
            client,
            "/upcoming",
            world.coordinator,
            study_id=study,
            days="30",
            per_page="2",
            page=str(page),
        )
        body = response.json()
        assert body["pagination"]["total"] == 6
        assert body["pagination"]["total_pages"] == 3
        pages.append([v["id"] for v in body["data"]])
    assert [len(p) for p in pages] == [2, 2, 2, 0]
    flat = [visit for page in pages for visit in page]
    assert len(set(flat)) == 6
    starts = [
        v["window_start"]
        for v in (
            await _list(
                client, "/upcoming", world.coordinator, study_id=study, days="30", per_page="100"
            )
        ).json()["data"]
    ]
    assert [datetime.fromisoformat(s) for s in starts] == sorted(
        datetime.fromisoformat(s) for s in starts
    )
    by_code = await _list(
        client,
        "",
        world.coordinator,
        study_id=study,
        sort="participant_id",
        order="desc",
        per_page="100",
    )
    codes = [v["participant_code"] for v in by_code.json()["data"]]
    assert codes == sorted(codes, reverse=True)
    unsortable = await _list(client, "", world.coordinator, sort="colour")
    assert unsortable.status_code == 422
    assert "window_start" in unsortable.json()["error"]["details"]["allowed"]
    code_without_study = await _list(client, "/overdue", world.coordinator, site_id="PARIS")
    assert code_without_study.status_code == 422


async def test_events_repeat_as_numbered_occurrences(
    client: httpx.AsyncClient, world: World
) -> None:
    await create_schedule(
        client,
        world,
        [event("weekly", 7, world.battery_id, after=2, repeat={"every_days": 7, "count": 4})],
    )
    participant = await enroll(client, world, "P-REPEAT")
    visits = await visits_of(client, world.coordinator, participant["id"], sort="due_at")
    today = today_in("Europe/Paris")
    assert [(v["occurrence"], v["due_date"]) for v in visits] == [
        (n, (today + timedelta(days=7 * n)).isoformat()) for n in (1, 2, 3, 4)
    ]
