from __future__ import annotations

import uuid

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.models.assessment import AssessmentSession, SessionStatus
from app.models.audit import AuditEvent
from app.models.study import MemberRole, Study
from app.models.user import UserRole
from tests import factories


async def events(db_session: AsyncSession, action: str) -> int:
    count = await db_session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
    )
    return int(count or 0)


async def test_researcher_creates_study_and_becomes_member(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    researcher = await factories.staff(db_session, client, UserRole.RESEARCHER)
    response = await client.post(
        "/api/studies",
        headers=researcher.headers,
        json={
            "code": "neuro-2024-001",
            "name": "Neuro",
            "supported_languages": ["en", "fr"],
            "start_date": "2026-01-01",
            "end_date": "2026-12-31",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["code"] == "NEURO-2024-001"
    assert body["status"] == "draft"
    members = await client.get(f"/api/studies/{body['id']}/members", headers=researcher.headers)
    assert [(m["email"], m["role"]) for m in members.json()["data"]] == [
        (researcher.email, "researcher")
    ]
    assert await events(db_session, "study.create") == 1


async def test_study_code_unique_and_validated(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    researcher = await factories.staff(db_session, client, UserRole.RESEARCHER)
    payload = {"code": "ABC-1", "name": "A"}
    assert (
        await client.post("/api/studies", headers=researcher.headers, json=payload)
    ).status_code == 201
    again = await client.post("/api/studies", headers=researcher.headers, json=payload)
    assert again.status_code == 409
    for bad in ["abc 1", "-ABC", "A", "ABC--1", "ÄBC-1"]:
        response = await client.post(
            "/api/studies", headers=researcher.headers, json={"code": bad, "name": "x"}
        )
        assert response.status_code == 422, bad
    dates = await client.post(
        "/api/studies",
        headers=researcher.headers,
        json={"code": "DATES-1", "name": "x", "start_date": "2026-02-01", "end_date": "2026-01-01"},
    )
    assert dates.status_code == 422
    assert dates.json()["error"]["details"]["errors"][0]["field"] == "end_date"


async def test_coordinators_create_studies_and_read_only_cannot(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    coordinator = await factories.staff(db_session, client, UserRole.COORDINATOR)
    created = await client.post(
        "/api/studies", headers=coordinator.headers, json={"code": "XC-COO", "name": "x"}
    )
    assert created.status_code == 201
    detail = await client.get(f"/api/studies/{created.json()['id']}", headers=coordinator.headers)
    assert detail.json()["my_role"] == "researcher"
    viewer = await factories.staff(db_session, client, UserRole.READ_ONLY)
    refused = await client.post(
        "/api/studies", headers=viewer.headers, json={"code": "XR-RO", "name": "x"}
    )
    assert refused.status_code == 403


async def test_status_transitions(client: httpx.AsyncClient, db_session: AsyncSession) -> None:
    researcher = await factories.staff(db_session, client, UserRole.RESEARCHER)
    study_id = (
        await client.post(
            "/api/studies", headers=researcher.headers, json={"code": "FLOW-1", "name": "Flow"}
        )
    ).json()["id"]

    async def move(status: str) -> httpx.Response:
        return await client.post(
            f"/api/studies/{study_id}/status",
            headers=researcher.headers,
            json={"status": status, "reason": "test"},
        )

    illegal = await move("completed")
    assert illegal.status_code == 409
    assert illegal.json()["error"]["details"]["allowed"] == ["active", "archived"]
    for status in ("active", "paused", "active", "completed", "archived"):
        response = await move(status)
        assert response.status_code == 200, (status, response.text)
        assert response.json()["status"] == status
    assert (await move("active")).status_code == 409
    assert (await move("archived")).status_code == 200  # already there: no change
    patch = await client.patch(
        f"/api/studies/{study_id}", headers=researcher.headers, json={"name": "New"}
    )
    assert patch.status_code == 409
    assert await events(db_session, "study.status_changed") == 5


async def test_update_study_audits_before_and_after(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    researcher = await factories.staff(db_session, client, UserRole.RESEARCHER)
    study_id = (
        await client.post(
            "/api/studies", headers=researcher.headers, json={"code": "UPD-1", "name": "Old"}
        )
    ).json()["id"]
    response = await client.patch(
        f"/api/studies/{study_id}",
        headers=researcher.headers,
        json={"name": "New", "supported_languages": ["en", "de"], "reason": "protocol v2"},
    )
    assert response.status_code == 200
    assert response.json()["supported_languages"] == ["en", "de"]
    event = await db_session.scalar(select(AuditEvent).where(AuditEvent.action == "study.update"))
    assert event is not None
    assert event.before is not None and event.before["name"] == "Old"
    assert event.after is not None and event.after["name"] == "New"
    assert event.reason == "protocol v2"
    bad = await client.patch(
        f"/api/studies/{study_id}",
        headers=researcher.headers,
        json={"supported_languages": ["EN!"]},
    )
    assert bad.status_code == 422


async def test_sites_and_members(client: httpx.AsyncClient, db_session: AsyncSession) -> None:
    researcher = await factories.staff(db_session, client, UserRole.RESEARCHER)
    coordinator = await factories.staff(db_session, client, UserRole.COORDINATOR)
    study_id = (
        await client.post(
            "/api/studies", headers=researcher.headers, json={"code": "SITES-1", "name": "S"}
        )
    ).json()["id"]
    base = f"/api/studies/{study_id}"
    bad_zone = await client.post(
        f"{base}/sites",
        headers=researcher.headers,
        json={"code": "P", "name": "P", "timezone": "Mars/Base"},
    )
    assert bad_zone.status_code == 422
    site = await client.post(
        f"{base}/sites",
        headers=researcher.headers,
        json={"code": "PARIS", "name": "Paris", "timezone": "Europe/Paris"},
    )
    assert site.status_code == 201
    duplicate = await client.post(
        f"{base}/sites", headers=researcher.headers, json={"code": "PARIS", "name": "Again"}
    )
    assert duplicate.status_code == 409
    site_id = site.json()["id"]
    added = await client.post(
        f"{base}/members",
        headers=researcher.headers,
        json={"user_id": str(coordinator.user_id), "role": "coordinator", "site_id": site_id},
    )
    assert added.status_code == 201, added.text
    assert (
        await client.post(
            f"{base}/members",
            headers=researcher.headers,
            json={"user_id": str(coordinator.user_id), "role": "coordinator"},
        )
    ).status_code == 409
    # The coordinator sees the study now, but may not configure it.
    assert (await client.get(base, headers=coordinator.headers)).json()["my_role"] == "coordinator"
    refused = await client.post(
        f"{base}/sites", headers=coordinator.headers, json={"code": "LYON", "name": "Lyon"}
    )
    assert refused.status_code == 403
    # The last researcher cannot be removed or demoted.
    members = (await client.get(f"{base}/members", headers=researcher.headers)).json()["data"]
    own = next(m for m in members if m["role"] == "researcher")
    assert (
        await client.delete(f"{base}/members/{own['id']}", headers=researcher.headers)
    ).status_code == 409
    member_id = added.json()["id"]
    updated = await client.patch(
        f"{base}/members/{member_id}", headers=researcher.headers, json={"site_id": None}
    )
    assert updated.status_code == 200 and updated.json()["site_id"] is None
    removed = await client.delete(f"{base}/members/{member_id}", headers=researcher.headers)
    assert removed.status_code == 204
    assert (await client.get(base, headers=coordinator.headers)).status_code == 404
    for action in ("site.create", "member.add", "member.update", "member.remove"):
        assert await events(db_session, action) == 1, action


async def test_invisible_study_is_404_everywhere(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    owner = await factories.staff(db_session, client, UserRole.RESEARCHER)
    outsider = await factories.staff(db_session, client, UserRole.RESEARCHER)
    study_id = (
        await client.post(
            "/api/studies", headers=owner.headers, json={"code": "HID-1", "name": "H"}
        )
    ).json()["id"]
    for method, path, body in [
        ("GET", f"/api/studies/{study_id}", None),
        ("PATCH", f"/api/studies/{study_id}", {"name": "x"}),
        ("POST", f"/api/studies/{study_id}/status", {"status": "active"}),
        ("GET", f"/api/studies/{study_id}/sites", None),
        ("POST", f"/api/studies/{study_id}/sites", {"code": "A", "name": "A"}),
        ("GET", f"/api/studies/{study_id}/members", None),
        ("GET", f"/api/participants?study_id={study_id}", None),
    ]:
        response = await client.request(method, path, headers=outsider.headers, json=body)
        assert response.status_code == 404, (method, path, response.text)
    listing = await client.get("/api/studies", headers=outsider.headers)
    assert listing.json()["data"] == []


async def test_list_carries_stats_scoped_to_site(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    study = await factories.study(db_session, code="STATS-1")
    paris = await factories.site(db_session, study, "PARIS")
    lyon = await factories.site(db_session, study, "LYON")
    coordinator = await factories.study_member(
        db_session, client, study, MemberRole.COORDINATOR, paris
    )
    parisians = [
        await factories.participant(db_session, study, f"P{index}", paris) for index in range(3)
    ]
    lyonnais = await factories.participant(db_session, study, "L1", lyon)
    battery_id, version_id = await factories.battery(db_session, study, ["simple-rt"])
    now = utcnow()
    for who, status in [
        (parisians[0], SessionStatus.COMPLETED),
        (parisians[1], SessionStatus.STARTED),
        (parisians[2], SessionStatus.COMPLETED),
        (parisians[2], SessionStatus.ABANDONED),
        (lyonnais, SessionStatus.COMPLETED),
    ]:
        db_session.add(
            AssessmentSession(
                id=uuid.uuid4(),
                study_id=study.id,
                participant_id=who.id,
                battery_id=battery_id,
                battery_version_id=version_id,
                battery_version=1,
                status=status,
                started_at=now,
                expires_at=now,
            )
        )
    await db_session.commit()
    admin_view = (await client.get("/api/studies?q=STATS", headers=admin.headers)).json()
    admin_stats = admin_view["data"][0]["stats"]
    assert admin_stats["participants_by_status"]["enrolled"] == 4
    assert (admin_stats["sessions_total"], admin_stats["sessions_completed"]) == (5, 3)
    assert admin_stats["completion_rate"] == 0.6
    assert admin_view["pagination"]["total"] == 1
    site_view = (await client.get("/api/studies", headers=coordinator.headers)).json()
    site_stats = site_view["data"][0]["stats"]
    assert site_stats["participants_total"] == 3
    assert (site_stats["sessions_total"], site_stats["sessions_completed"]) == (4, 2)
    assert site_stats["completion_rate"] == 0.5


async def test_sites_and_members_are_paged_like_every_list(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    study = await factories.study(db_session, code="PAGED-1")
    researcher = await factories.study_member(db_session, client, study, MemberRole.RESEARCHER)
    for code in ("NANTES", "LYON", "PARIS"):
        await factories.site(db_session, study, code)
    for _ in range(2):
        await factories.study_member(db_session, client, study, MemberRole.READ_ONLY)
    base = f"/api/studies/{study.id}"

    first = await client.get(f"{base}/sites?per_page=2", headers=researcher.headers)
    assert first.status_code == 200, first.text
    assert [s["code"] for s in first.json()["data"]] == ["LYON", "NANTES"]
    assert first.json()["pagination"] == {
        "page": 1,
        "per_page": 2,
        "total": 3,
        "total_pages": 2,
        "has_next": True,
        "has_prev": False,
    }
    second = await client.get(f"{base}/sites?per_page=2&page=2", headers=researcher.headers)
    assert [s["code"] for s in second.json()["data"]] == ["PARIS"]
    by_name = await client.get(f"{base}/sites?sort=name&order=desc", headers=researcher.headers)
    assert [s["name"] for s in by_name.json()["data"]] == ["PARIS", "NANTES", "LYON"]

    members = await client.get(f"{base}/members?per_page=1", headers=researcher.headers)
    assert members.status_code == 200, members.text
    assert len(members.json()["data"]) == 1
    assert members.json()["pagination"]["total"] == 3
    by_role = await client.get(f"{base}/members?sort=role&per_page=100", headers=researcher.headers)
    assert [m["role"] for m in by_role.json()["data"]] == ["read_only", "read_only", "researcher"]

    for path in ("sites", "members"):
        refused = await client.get(f"{base}/{path}?sort=timezone", headers=researcher.headers)
        assert refused.status_code == 422
        assert refused.json()["error"]["details"]["field"] == "sort"
        too_many = await client.get(f"{base}/{path}?per_page=101", headers=researcher.headers)
        assert too_many.status_code == 422


async def test_every_route_answers_the_same_study_read_model(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    researcher = await factories.staff(db_session, client, UserRole.RESEARCHER)
    created = await client.post(
        "/api/studies", headers=researcher.headers, json={"code": "SAME-1", "name": "Same"}
    )
    assert created.status_code == 201, created.text
    study_id = created.json()["id"]
    study = await db_session.get(Study, uuid.UUID(study_id))
    assert study is not None
    await factories.participant(db_session, study, "P1")
    base = f"/api/studies/{study_id}"

    answers = {
        "create": created,
        "get": await client.get(base, headers=researcher.headers),
        "list": await client.get("/api/studies?q=SAME-1", headers=researcher.headers),
        "patch": await client.patch(base, headers=researcher.headers, json={"name": "Renamed"}),
        "status": await client.post(
            f"{base}/status", headers=researcher.headers, json={"status": "active"}
        ),
    }
    for route, response in answers.items():
        assert response.status_code in (200, 201), (route, response.text)
        body = response.json()
        study_read = body["data"][0] if route == "list" else body
        assert set(study_read) == set(created.json()), route
        assert study_read["my_role"] == "researcher", route
        expected_total = 0 if route == "create" else 1
        assert study_read["stats"]["participants_total"] == expected_total, route
    assert answers["status"].json()["status"] == "active"
    assert answers["status"].json()["stats"]["participants_by_status"]["enrolled"] == 1


async def test_administrators_see_their_role_as_admin_on_writes(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    created = await client.post(
        "/api/studies", headers=admin.headers, json={"code": "ADM-1", "name": "A"}
    )
    assert created.json()["my_role"] == "admin"
    moved = await client.post(
        f"/api/studies/{created.json()['id']}/status",
        headers=admin.headers,
        json={"status": "active"},
    )
    assert moved.json()["my_role"] == "admin"
    assert moved.json()["stats"]["participants_total"] == 0
