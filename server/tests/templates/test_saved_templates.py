"""Templates saved on the server (`POST /api/templates`): from a study or from a document,
listed with the built-ins for their author and administrators only, applied by id into a study
that exports back to the same document, deleted; every save and delete audited."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import AuditEvent
from app.models.user import UserRole
from tests import factories


def _code() -> str:
    return f"SAV-{uuid.uuid4().hex[:8].upper()}"


async def _apply(
    client: httpx.AsyncClient, headers: dict[str, str], template_id: str
) -> dict[str, Any]:
    response = await client.post(
        f"/api/templates/{template_id}/apply",
        headers=headers,
        json={"code": _code(), "name": "Made from a template"},
    )
    assert response.status_code == 201, response.text
    applied: dict[str, Any] = response.json()
    return applied


async def _export(client: httpx.AsyncClient, headers: dict[str, str], study_id: str) -> Any:
    response = await client.get(
        "/api/templates/export", headers=headers, params={"study_id": study_id}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_study_saved_as_a_template_makes_a_study_that_exports_the_same(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    author = await factories.staff(db_session, client, UserRole.RESEARCHER)
    source = (await _apply(client, author.headers, "screening-10min"))["study"]["id"]

    saved = await client.post(
        "/api/templates",
        headers=author.headers,
        json={"title": "Our screening", "summary": "As run in 2026", "from_study_id": source},
    )
    assert saved.status_code == 201, saved.text
    body = saved.json()
    assert body["kind"] == "saved" and body["source_study_id"] == source
    assert body["document"] == await _export(client, author.headers, source)
    assert body["estimated_minutes"] == 10

    listed = await client.get("/api/templates", headers=author.headers)
    kinds = {item["id"]: item["kind"] for item in listed.json()}
    assert kinds[body["id"]] == "saved" and kinds["screening-10min"] == "builtin"
    fetched = await client.get(f"/api/templates/{body['id']}", headers=author.headers)
    assert fetched.status_code == 200 and fetched.json()["document"] == body["document"]

    study = (await _apply(client, author.headers, body["id"]))["study"]
    assert await _export(client, author.headers, study["id"]) == body["document"]

    [event] = (
        await db_session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "template.create",
                AuditEvent.entity_id == body["id"],
            )
        )
    ).all()
    assert event.after is not None and event.after["title"] == "Our screening"


async def test_a_document_is_saved_checked_and_its_errors_name_the_path(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    author = await factories.staff(db_session, client, UserRole.COORDINATOR)
    builtin = await client.get("/api/templates/pro-follow-up", headers=author.headers)
    document = builtin.json()["document"]
    saved = await client.post(
        "/api/templates", headers=author.headers, json={"title": "PRO", "document": document}
    )
    assert saved.status_code == 201, saved.text
    assert saved.json()["document"] == document and saved.json()["source_study_id"] is None

    broken = {**document, "batteries": [{**document["batteries"][0], "tasks": "none"}]}
    refused = await client.post(
        "/api/templates", headers=author.headers, json={"title": "Bad", "document": broken}
    )
    assert refused.status_code == 422, refused.text
    fields = [e["field"] for e in refused.json()["error"]["details"]["errors"]]
    assert "batteries.0.tasks" in fields

    for body in (
        {"title": "Neither"},
        {"title": "Both", "document": document, "from_study_id": str(uuid.uuid4())},
    ):
        answer = await client.post("/api/templates", headers=author.headers, json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["details"]["errors"][0]["field"] == "from_study_id"


async def test_a_saved_template_is_its_authors_and_the_administrators_only(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    author = await factories.staff(db_session, client, UserRole.RESEARCHER)
    other = await factories.staff(db_session, client, UserRole.RESEARCHER)
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    reader = await factories.staff(db_session, client, UserRole.READ_ONLY)
    source = (await _apply(client, author.headers, "screening-10min"))["study"]["id"]
    saved = await client.post(
        "/api/templates", headers=author.headers, json={"title": "Mine", "from_study_id": source}
    )
    template_id = saved.json()["id"]

    # Another researcher neither sees it, nor reads, applies or deletes it.
    listed = await client.get("/api/templates", headers=other.headers)
    assert template_id not in {item["id"] for item in listed.json()}
    assert (
        await client.get(f"/api/templates/{template_id}", headers=other.headers)
    ).status_code == 404
    applied = await client.post(
        f"/api/templates/{template_id}/apply",
        headers=other.headers,
        json={"code": _code(), "name": "Not theirs"},
    )
    assert applied.status_code == 404
    assert (
        await client.delete(f"/api/templates/{template_id}", headers=other.headers)
    ).status_code == 404
    # Nor can they save a study they do not configure.
    foreign = await client.post(
        "/api/templates", headers=other.headers, json={"title": "X", "from_study_id": source}
    )
    assert foreign.status_code == 404, foreign.text
    # A read-only account cannot create studies, so it cannot save documents either.
    document = saved.json()["document"]
    read_only = await client.post(
        "/api/templates", headers=reader.headers, json={"title": "X", "document": document}
    )
    assert read_only.status_code == 403, read_only.text

    # An administrator sees it and may delete it; it is gone for everyone, audited.
    assert (
        await client.get(f"/api/templates/{template_id}", headers=admin.headers)
    ).status_code == 200
    deleted = await client.delete(f"/api/templates/{template_id}", headers=admin.headers)
    assert deleted.status_code == 204, deleted.text
    assert (
        await client.get(f"/api/templates/{template_id}", headers=author.headers)
    ).status_code == 404
    actions = (
        await db_session.scalars(
            select(AuditEvent.action).where(AuditEvent.entity_id == template_id)
        )
    ).all()
    assert sorted(actions) == ["template.create", "template.delete"]
    # Built-ins ship with the server: not deletable; a name that is nothing is not found.
    builtin = await client.delete("/api/templates/screening-10min", headers=admin.headers)
    assert builtin.status_code == 409 and builtin.json()["error"]["details"]["reason"] == (
        "BUILTIN_TEMPLATE"
    )
    assert (await client.delete("/api/templates/nothing", headers=admin.headers)).status_code == 404
