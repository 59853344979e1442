"""Report jobs: who may create, read and download them, bad input, the lifecycle shared with
export jobs, and the separation between the two families of routes."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import AuditEvent
from tests.reports.conftest import Runner, World, make_report, participant_url, study_url


def _code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


@pytest.mark.parametrize("who", ["coordinator", "viewer"])
async def test_roles_without_export_are_refused(
    client: httpx.AsyncClient, world: World, who: str
) -> None:
    headers = getattr(world, who).headers
    for url in (participant_url(world, "ALPHA-001"), study_url(world)):
        response = await client.post(url, headers=headers, json={})
        assert response.status_code == 403, response.text
        assert _code(response) == "FORBIDDEN"
    listed = await client.get("/api/reports", headers=headers, params={"study_id": world.study_id})
    assert listed.status_code == 403


async def test_others_see_nothing(client: httpx.AsyncClient, runner: Runner, world: World) -> None:
    report, _ = await make_report(client, runner, world.researcher.headers, study_url(world))
    outsider = world.outsider.headers
    for url in (participant_url(world, "ALPHA-001"), study_url(world)):
        assert (await client.post(url, headers=outsider, json={})).status_code == 404
    for path in (f"/api/reports/{report['id']}", f"/api/reports/{report['id']}/download"):
        assert (await client.get(path, headers=outsider)).status_code == 404
        assert (await client.get(path, headers=world.coordinator.headers)).status_code == 403
    # The site-scoped researcher does not see a report of the whole study.
    site = world.site_researcher.headers
    assert (await client.get(f"/api/reports/{report['id']}", headers=site)).status_code == 404
    listed = await client.get("/api/reports", headers=site, params={"study_id": world.study_id})
    assert listed.json() == []
    assert (await client.get(f"/api/reports/{report['id']}")).status_code == 401


async def test_a_participant_of_another_study_is_not_found(
    client: httpx.AsyncClient, world: World
) -> None:
    url = f"{study_url(world)}/participants/{world.foreign_participant_id}"
    response = await client.post(url, headers=world.researcher.headers, json={})
    assert response.status_code == 404
    assert _code(response) == "NOT_FOUND"
    unknown = f"{study_url(world)}/participants/{uuid.uuid4()}"
    assert (await client.post(unknown, headers=world.researcher.headers)).status_code == 404


async def test_a_participant_whose_data_was_deleted_is_refused(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await client.post(
        participant_url(world, "WIPED-003"), headers=world.researcher.headers, json={}
    )
    assert response.status_code == 409
    assert response.json()["error"]["details"]["reason"] == "PARTICIPANT_DATA_DELETED"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/reports/studies/not-a-uuid", {}),
        ("/api/reports/studies/{study}/participants/123", {}),
        ("/api/reports/studies/{study}/participants/{alpha}", {"include_pii": "maybe"}),
        ("/api/reports/studies/{study}/participants/{alpha}", {"format": "docx"}),
        ("/api/reports/studies/{study}", {"participant_id": "x"}),
        ("/api/reports/studies/{study}", [1, 2]),
    ],
)
async def test_bad_input_is_422(
    client: httpx.AsyncClient, world: World, path: str, body: object
) -> None:
    url = path.format(study=world.study_id, alpha=world.participant_ids["ALPHA-001"])
    response = await client.post(url, headers=world.researcher.headers, json=body)
    assert response.status_code == 422, response.text
    assert _code(response) == "VALIDATION_ERROR"


async def test_bad_ids_on_read_routes(client: httpx.AsyncClient, world: World) -> None:
    headers = world.researcher.headers
    assert (await client.get("/api/reports/nope", headers=headers)).status_code == 422
    assert (await client.get("/api/reports", headers=headers)).status_code == 422
    missing = f"/api/reports/{uuid.uuid4()}"
    assert (await client.get(missing, headers=headers)).status_code == 404
    assert (await client.get(f"{missing}/download", headers=headers)).status_code == 404
    assert (await client.delete(missing, headers=headers)).status_code == 404


async def test_lifecycle_download_before_ready_list_delete(
    client: httpx.AsyncClient, runner: Runner, world: World, db_session: AsyncSession
) -> None:
    headers = world.researcher.headers
    created = await client.post(participant_url(world, "ALPHA-001"), headers=headers)
    assert created.status_code == 202
    report_id = created.json()["id"]
    assert created.json()["download_url"] is None
    early = await client.get(f"/api/reports/{report_id}/download", headers=headers)
    assert early.status_code == 409
    assert early.json()["error"]["details"]["reason"] == "EXPORT_NOT_READY"
    busy = await client.delete(f"/api/reports/{report_id}", headers=headers)
    assert busy.status_code == 409

    await runner.run()
    listed = await client.get("/api/reports", headers=headers, params={"study_id": world.study_id})
    assert [r["id"] for r in listed.json()] == [report_id]
    assert listed.json()[0]["status"] == "ready"

    deleted = await client.delete(f"/api/reports/{report_id}", headers=headers)
    assert deleted.status_code == 200
    assert deleted.json()["status"] == "deleted"
    gone = await client.get(f"/api/reports/{report_id}/download", headers=headers)
    assert gone.status_code == 410
    assert _code(gone) == "EXPORT_GONE"
    actions = (
        await db_session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.entity_id == report_id)
            .order_by(AuditEvent.occurred_at)
        )
    ).all()
    assert sorted(actions) == ["report.created", "report.deleted", "report.ready"]


async def test_reports_and_exports_are_separate_families(
    client: httpx.AsyncClient, runner: Runner, world: World
) -> None:
    headers = world.researcher.headers
    report, _ = await make_report(client, runner, headers, study_url(world))
    exported = await client.post(
        "/api/exports", headers=headers, json={"study_id": world.study_id, "format": "csv"}
    )
    assert exported.status_code == 202
    export_id = exported.json()["id"]
    await runner.run()
    assert (await client.get(f"/api/exports/{report['id']}", headers=headers)).status_code == 404
    assert (await client.get(f"/api/reports/{export_id}", headers=headers)).status_code == 404
    exports = await client.get("/api/exports", headers=headers, params={"study_id": world.study_id})
    assert [job["id"] for job in exports.json()] == [export_id]
    reports = await client.get("/api/reports", headers=headers, params={"study_id": world.study_id})
    assert [r["id"] for r in reports.json()] == [report["id"]]


async def test_a_report_is_never_served_after_its_participant_is_erased(
    client: httpx.AsyncClient, runner: Runner, world: World, db_session: AsyncSession
) -> None:
    headers = world.researcher.headers
    report, _ = await make_report(client, runner, headers, participant_url(world, "BRAVO-002"))
    events = (
        await db_session.scalars(select(AuditEvent).where(AuditEvent.entity_id == report["id"]))
    ).all()
    assert {event.participant_id for event in events} == {world.participant_ids["BRAVO-002"]}

    withdrawn = await client.post(
        f"/api/participants/{world.participant_ids['BRAVO-002']}/withdraw",
        headers=headers,
        json={"reason": "asked for erasure", "scope": "delete_data"},
    )
    assert withdrawn.status_code == 200, withdrawn.text
    gone = await client.get(report["download_url"], headers=headers)
    assert gone.status_code == 410
    assert gone.json()["error"]["details"]["status"] == "participant_erased"
