"""The direct streamed trials CSV: COPY on PostgreSQL, a batched cursor on SQLite."""

from __future__ import annotations

import csv
import io
import uuid

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import AuditEvent
from tests.exports.conftest import World, attach_visit

pytestmark = pytest.mark.usefixtures("stream_in_test_session")


def _rows(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text, newline="")))


async def test_the_stream_holds_the_trials_in_scope(
    client: httpx.AsyncClient, world: World, db_session: AsyncSession
) -> None:
    path = f"/api/exports/studies/{world.study_id}/trials.csv"
    rows = _rows(await client.get(path, headers=world.researcher.headers))
    assert len(rows) == 44  # W1 withdrew with deletion: absent
    assert {r["participant_code"] for r in rows} == {"A1", "B1"}
    first = next(
        r
        for r in rows
        if r["participant_code"] == "A1" and r["task"] == "simple-rt" and r["trial_index"] == "0"
    )
    assert first["response"] == "'=1+2"
    assert first["is_practice"] == "false"
    assert float(first["rt"]) == 300.0
    assert first["session_id"] == world.session_ids["A1"]
    assert [int(r["trial_id"]) for r in rows] == sorted(int(r["trial_id"]) for r in rows)

    exact = _rows(
        await client.get(
            path, headers=world.researcher.headers, params={"spreadsheet_safe": "false"}
        )
    )
    assert "=1+2" in {r["response"] for r in exact}
    assert "-SUM(A1)" in {r["response"] for r in exact}

    narrowed = _rows(
        await client.get(
            path,
            headers=world.researcher.headers,
            params={"site_id": str(world.site_ids["S2"]), "task": "flanker"},
        )
    )
    assert {(r["participant_code"], r["task"]) for r in narrowed} == {("B1", "flanker")}
    assert len(narrowed) == 12

    events = (
        await db_session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "export.streamed", AuditEvent.entity_id == world.study_id
            )
        )
    ).all()
    assert len(events) == 3
    assert all(event.category == "export" for event in events)


async def test_the_stream_filters_by_visit(
    client: httpx.AsyncClient, world: World, db_session: AsyncSession
) -> None:
    await attach_visit(db_session, world, world.session_ids["B1"], "week-4")
    path = f"/api/exports/studies/{world.study_id}/trials.csv"
    rows = _rows(
        await client.get(path, headers=world.researcher.headers, params={"visit_key": "week-4"})
    )
    assert len(rows) == 22
    assert {(r["participant_code"], r["visit_key"]) for r in rows} == {("B1", "week-4")}
    none = await client.get(path, headers=world.researcher.headers, params={"visit_key": "other"})
    assert _rows(none) == []


async def test_a_site_that_is_not_the_studys_is_refused_as_in_a_job(
    client: httpx.AsyncClient, world: World, db_session: AsyncSession
) -> None:
    """A site filter naming no site of the study is 422, as in a job's filters, not an empty
    CSV that reads like a site without data; nothing is audited."""
    path = f"/api/exports/studies/{world.study_id}/trials.csv"
    stranger = str(uuid.uuid4())
    refused = await client.get(
        path,
        headers=world.researcher.headers,
        params={"site_id": [str(world.site_ids["S2"]), stranger]},
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "VALIDATION_ERROR"
    assert refused.json()["error"]["details"] == {"site_id": [stranger]}
    events = (
        await db_session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "export.streamed", AuditEvent.entity_id == world.study_id
            )
        )
    ).all()
    assert events == []
    own = _rows(
        await client.get(
            path, headers=world.researcher.headers, params={"site_id": str(world.site_ids["S2"])}
        )
    )
    assert {r["site_code"] for r in own} == {"S2"}


async def test_the_stream_needs_the_export_capability(
    client: httpx.AsyncClient, world: World
) -> None:
    path = f"/api/exports/studies/{world.study_id}/trials.csv"
    for person in (world.coordinator, world.viewer):
        assert (await client.get(path, headers=person.headers)).status_code == 403
    assert (await client.get(path, headers=world.outsider.headers)).status_code == 404
    assert (await client.get(path)).status_code == 401
    scoped = _rows(await client.get(path, headers=world.site_researcher.headers))
    assert {r["site_code"] for r in scoped} == {"S2"}


async def test_a_script_streams_the_trials_with_an_export_token_and_not_without(
    client: httpx.AsyncClient, world: World
) -> None:
    """Personal access tokens (docs/accounts.md): `export` lets a script download the trials;
    a read-only token is refused with the capability it lacks."""
    tokens = {}
    for scopes in (["read"], ["read", "export"]):
        created = await client.post(
            "/api/access-tokens",
            headers=world.researcher.headers,
            json={"name": "+".join(scopes), "scopes": scopes, "expires_in_days": 1},
        )
        assert created.status_code == 201, created.text
        tokens["+".join(scopes)] = {"Authorization": f"Bearer {created.json()['token']}"}
    path = f"/api/exports/studies/{world.study_id}/trials.csv"
    assert len(_rows(await client.get(path, headers=tokens["read+export"]))) == 44
    refused = await client.get(path, headers=tokens["read"])
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["details"]["required"] == "export"
