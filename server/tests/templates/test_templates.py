"""Study templates through the HTTP API: every built-in creates a working study and exports back
to itself; access rules; bad documents answer 422 with their JSON path and leave nothing."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalogue import list_modules
from app.config import Settings
from app.core.clock import utcnow
from app.models.audit import AuditEvent
from app.models.redcap import RedcapProject
from app.models.study import MemberRole, Study
from app.models.user import UserRole
from app.models.webhook import WebhookSubscription
from app.services.templates import builtin_templates
from tests import factories

BUILTIN_IDS = [template.id for template in builtin_templates()]


def _code() -> str:
    return f"TPL-{uuid.uuid4().hex[:8].upper()}"


async def _builtin(client: httpx.AsyncClient, headers: dict[str, str], template_id: str) -> Any:
    response = await client.get(f"/api/templates/{template_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _export(client: httpx.AsyncClient, headers: dict[str, str], study_id: str) -> Any:
    response = await client.get(
        "/api/templates/export", headers=headers, params={"study_id": study_id}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def _apply_document(
    client: httpx.AsyncClient, headers: dict[str, str], document: Any, code: str | None = None
) -> httpx.Response:
    return await client.post(
        "/api/templates/apply",
        headers=headers,
        json={"code": code or _code(), "name": "From a file", "document": document},
    )


def _fields(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"]["code"] == "VALIDATION_ERROR"
    return [error["field"] for error in body["error"]["details"]["errors"]]


async def test_the_builtins_are_listed_and_cover_what_they_promise(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    researcher = await factories.staff(db_session, client, UserRole.RESEARCHER)
    response = await client.get("/api/templates", headers=researcher.headers)
    assert response.status_code == 200, response.text
    listed = {item["id"]: item for item in response.json()}
    assert set(listed) == {"screening-10min", "deep-phenotyping", "pro-follow-up"}
    assert listed["screening-10min"]["estimated_minutes"] == 10

    def modules(template_id: str, document: Any) -> list[str]:
        return [task["module_id"] for b in document["batteries"] for task in b["tasks"]]

    screening = (await _builtin(client, researcher.headers, "screening-10min"))["document"]
    assert modules("screening-10min", screening) == ["simple-rt", "cpt-go-nogo", "digit-span"]
    pro = (await _builtin(client, researcher.headers, "pro-follow-up"))["document"]
    assert modules("pro-follow-up", pro) == ["brain-fog-scale", "mfis"]
    deep = (await _builtin(client, researcher.headers, "deep-phenotyping"))["document"]
    domain_of = {module.id: module.domain for module in list_modules()}
    cognitive_domains = {module.domain for module in list_modules(kind="cognitive")}
    assert {domain_of[m] for m in modules("deep-phenotyping", deep)} == cognitive_domains

    missing = await client.get("/api/templates/no-such-template", headers=researcher.headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOT_FOUND"


async def test_the_schema_is_served_and_every_builtin_satisfies_it(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    reader = await factories.staff(db_session, client, UserRole.READ_ONLY)
    response = await client.get("/api/templates/schema", headers=reader.headers)
    assert response.status_code == 200, response.text
    schema = response.json()
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    for template_id in BUILTIN_IDS:
        document = (await _builtin(client, reader.headers, template_id))["document"]
        assert list(validator.iter_errors(document)) == [], template_id
    bad = copy.deepcopy(document)
    bad["format_version"] = 2
    assert list(validator.iter_errors(bad))


@pytest.mark.parametrize("template_id", BUILTIN_IDS)
async def test_a_builtin_makes_a_working_study_and_exports_back_to_itself(
    client: httpx.AsyncClient, db_session: AsyncSession, template_id: str
) -> None:
    creator = await factories.staff(db_session, client, UserRole.COORDINATOR)
    template = await _builtin(client, creator.headers, template_id)
    code = _code()
    response = await client.post(
        f"/api/templates/{template_id}/apply",
        headers=creator.headers,
        json={"code": code, "name": template["title"]},
    )
    assert response.status_code == 201, response.text
    applied = response.json()
    study = applied["study"]
    assert study["code"] == code
    assert study["status"] == "draft"
    assert study["my_role"] == "researcher"  # the creator configures what they created
    assert applied["not_applied"] == []
    document = template["document"]
    assert len(applied["battery_ids"]) == len(document["batteries"])
    assert len(applied["consent_form_ids"]) == len(document["consent_forms"])

    # Lossless: the study exports as the template it was made from.
    assert await _export(client, creator.headers, study["id"]) == document

    # The batteries are published as usual: version 1 with defaults merged.
    listed = await client.get(
        "/api/batteries", headers=creator.headers, params={"study_id": study["id"]}
    )
    assert listed.status_code == 200, listed.text
    batteries = {item["id"]: item for item in listed.json()["data"]}
    assert set(batteries) == set(applied["battery_ids"])
    for battery_id, written in zip(applied["battery_ids"], document["batteries"], strict=True):
        stored = batteries[battery_id]
        assert stored["version"] == 1
        assert [t["module_id"] for t in stored["tasks"]] == [
            t["module_id"] for t in written["tasks"]
        ]
        for task, given in zip(stored["tasks"], written["tasks"], strict=True):
            assert given["config"].items() <= task["config"].items()

    forms = await client.get(
        "/api/consent/forms", headers=creator.headers, params={"study_id": study["id"]}
    )
    assert forms.status_code == 200, forms.text
    assert sorted(f["language"] for f in forms.json()["data"] if f["status"] == "published") == [
        f["language"] for f in document["consent_forms"]
    ]

    # Every row was written through the services, so every one is audited.
    study_uuid = uuid.UUID(study["id"])
    actions = (
        await db_session.scalars(select(AuditEvent.action).where(AuditEvent.study_id == study_uuid))
    ).all()
    assert actions.count("study.create") == 1
    assert actions.count("battery.create") == len(document["batteries"])
    assert actions.count("schedule.create") == 1
    assert actions.count("consent.form_published") == len(document["consent_forms"])

    # The study runs: activated, an enrolled participant gets the schedule's visits.
    activated = await client.post(
        f"/api/studies/{study['id']}/status", headers=creator.headers, json={"status": "active"}
    )
    assert activated.status_code == 200, activated.text
    enrolled = await client.post(
        "/api/participants",
        headers=creator.headers,
        json={"study_id": study["id"], "participant_id": "P001"},
    )
    assert enrolled.status_code == 201, enrolled.text
    visits = await client.get(
        "/api/schedules/visits",
        headers=creator.headers,
        params={"participant_id": enrolled.json()["id"], "per_page": "100"},
    )
    assert visits.status_code == 200, visits.text
    expected = sum(
        (event.get("repeat") or {"count": 1})["count"] for event in document["schedule"]["events"]
    )
    assert len(visits.json()["data"]) == expected
    battery_of_event = {
        event["key"]: applied["battery_ids"][event["battery"]]
        for event in document["schedule"]["events"]
    }
    for visit in visits.json()["data"]:
        assert visit["battery_id"] == battery_of_event[visit["event_key"]]


async def test_a_file_round_trips_with_sites_and_overrides_normalized(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    researcher = await factories.staff(db_session, client, UserRole.RESEARCHER)
    document: dict[str, Any] = {
        "format_version": 1,
        "study": {"supported_languages": ["en"], "timezone": "Europe/Paris", "config": {"a": 1}},
        "sites": [
            {"code": "PARIS", "name": "Paris", "timezone": "Europe/Paris"},
            {"code": "NYC", "name": "New York", "timezone": "America/New_York"},
        ],
        "batteries": [
            # 20 is simple-rt's default: the export leaves it out.
            {"name": "  B  ", "tasks": [{"module_id": "simple-rt", "config": {"n_trials": 20}}]}
        ],
    }
    response = await _apply_document(client, researcher.headers, document)
    assert response.status_code == 201, response.text
    exported = await _export(client, researcher.headers, response.json()["study"]["id"])
    assert exported["sites"] == document["sites"]
    assert exported["study"]["config"] == {"a": 1}
    assert exported["batteries"][0]["name"] == "B"  # stripped, as the batteries service stores it
    assert exported["batteries"][0]["tasks"] == [{"module_id": "simple-rt", "config": {}}]
    assert exported["schedule"] is None
    # The export is itself a template: applying it gives the same export again.
    again = await _apply_document(client, researcher.headers, exported)
    assert again.status_code == 201, again.text
    assert await _export(client, researcher.headers, again.json()["study"]["id"]) == exported


async def test_integrations_are_exported_without_secrets_and_not_applied(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    researcher = await factories.staff(db_session, client, UserRole.RESEARCHER)
    response = await client.post(
        "/api/templates/screening-10min/apply",
        headers=researcher.headers,
        json={"code": _code(), "name": "Screening"},
    )
    assert response.status_code == 201, response.text
    study_id = uuid.UUID(response.json()["study"]["id"])
    db_session.add(
        WebhookSubscription(
            id=uuid.uuid4(),
            study_id=study_id,
            url="https://hooks.example.org/metricis",
            description="EDC",
            event_types=["session.completed"],
            active=True,
            secret_encrypted="SECRET-CIPHERTEXT",
            secret_created_at=utcnow(),
        )
    )
    db_session.add(
        RedcapProject(
            id=uuid.uuid4(),
            study_id=study_id,
            site_id=None,
            api_url="https://redcap.example.org/api/",
            token_encrypted="TOKEN-SECRET-CIPHERTEXT",
            record_id_field="record_id",
            field_mapping={"simple-rt.median_rt_ms": "srt_median"},
            event_mapping={"screening": "screening_arm_1"},
            enabled=True,
            trigger_token_hash="a" * 64,
            trigger_token_encrypted="TRIGGER-SECRET-CIPHERTEXT",
        )
    )
    await db_session.commit()
    exported = await _export(client, researcher.headers, str(study_id))
    assert exported["integrations"]["redcap"] == {
        "api_url": "https://redcap.example.org/api/",
        "record_id_field": "record_id",
        "field_mapping": {"simple-rt.median_rt_ms": "srt_median"},
        "event_mapping": {"screening": "screening_arm_1"},
        "enabled": True,
    }
    assert exported["integrations"]["webhooks"] == [
        {
            "url": "https://hooks.example.org/metricis",
            "description": "EDC",
            "event_types": ["session.completed"],
            "active": True,
        }
    ]
    assert "SECRET" not in str(exported)
    copied = await _apply_document(client, researcher.headers, exported)
    assert copied.status_code == 201, copied.text
    assert copied.json()["not_applied"] == ["integrations.redcap", "integrations.webhooks"]
    count = await db_session.scalar(
        select(func.count())
        .select_from(WebhookSubscription)
        .where(WebhookSubscription.study_id == uuid.UUID(copied.json()["study"]["id"]))
    )
    assert count == 0


async def test_access_rules(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> None:
    assert (await client.get("/api/templates")).status_code == 401
    reader = await factories.staff(db_session, client, UserRole.READ_ONLY)
    refused = await client.post(
        "/api/templates/screening-10min/apply",
        headers=reader.headers,
        json={"code": _code(), "name": "No"},
    )
    assert refused.status_code == 403, refused.text

    researcher = await factories.staff(db_session, client, UserRole.RESEARCHER)
    made = await client.post(
        "/api/templates/pro-follow-up/apply",
        headers=researcher.headers,
        json={"code": _code(), "name": "PRO"},
    )
    assert made.status_code == 201, made.text
    study_id = made.json()["study"]["id"]
    study = await db_session.get(Study, uuid.UUID(study_id))
    assert study is not None

    coordinator = await factories.staff(db_session, client, UserRole.COORDINATOR)
    await factories.member(db_session, study, coordinator, MemberRole.COORDINATOR)
    member_reader = await factories.staff(db_session, client, UserRole.READ_ONLY)
    await factories.member(db_session, study, member_reader, MemberRole.READ_ONLY)
    outsider = await factories.staff(db_session, client, UserRole.RESEARCHER)
    admin = await factories.staff(db_session, client, UserRole.ADMIN)

    params = {"study_id": study_id}
    for headers in (coordinator.headers, member_reader.headers):
        answer = await client.get("/api/templates/export", headers=headers, params=params)
        assert answer.status_code == 403, answer.text
    hidden = await client.get("/api/templates/export", headers=outsider.headers, params=params)
    assert hidden.status_code == 404, hidden.text
    assert (
        await client.get("/api/templates/export", headers=admin.headers, params=params)
    ).status_code == 200

    participant = await factories.participant(db_session, study)
    token = await factories.participant_headers(db_session, settings, participant)
    for method, url, body in (
        ("GET", "/api/templates", None),
        ("GET", "/api/templates/schema", None),
        ("GET", "/api/templates/pro-follow-up", None),
        ("POST", "/api/templates/pro-follow-up/apply", {"code": _code(), "name": "P"}),
        ("POST", "/api/templates/apply", {"code": _code(), "name": "P", "document": {}}),
    ):
        answer = await client.request(method, url, headers=token, json=body)
        assert answer.status_code == 403, (url, answer.text)
        assert answer.json()["error"]["details"]["reason"] == "STAFF_ONLY"


async def test_bad_documents_name_the_json_path_and_leave_nothing(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    researcher = await factories.staff(db_session, client, UserRole.RESEARCHER)
    good = (await _builtin(client, researcher.headers, "screening-10min"))["document"]

    def changed(edit: Any) -> Any:
        document = copy.deepcopy(good)
        edit(document)
        return document

    async def fields_of(document: Any) -> list[str]:
        code = _code()
        response = await _apply_document(client, researcher.headers, document, code)
        fields = _fields(response)
        # One transaction: nothing of the study was kept.
        assert await db_session.scalar(select(Study.id).where(Study.code == code)) is None
        return fields

    def bad_config(d: Any) -> None:
        d["batteries"][0]["tasks"][1]["config"] = {"n_trials": -5}

    assert await fields_of(changed(bad_config)) == ["batteries.0.tasks.1.config.n_trials"]

    def unknown_module(d: Any) -> None:
        d["batteries"][0]["tasks"][2]["module_id"] = "digit-spam"

    assert await fields_of(changed(unknown_module)) == ["batteries.0.tasks.2.module_id"]

    def dangling(d: Any) -> None:
        d["schedule"]["events"][0]["battery"] = 3

    assert await fields_of(changed(dangling)) == ["schedule.events.0.battery"]

    def misspelt(d: Any) -> None:
        d["batteries"][0]["taks"] = []

    assert "batteries.0.taks" in await fields_of(changed(misspelt))

    def future(d: Any) -> None:
        d["format_version"] = 2

    assert await fields_of(changed(future)) == ["format_version"]

    def foreign_language(d: Any) -> None:
        d["consent_forms"][0]["language"] = "de"

    assert await fields_of(changed(foreign_language)) == ["consent_forms.0.language"]

    def bad_zone(d: Any) -> None:
        d["study"]["timezone"] = "Mars/Olympus"

    assert await fields_of(changed(bad_zone)) == ["study.timezone"]

    def reminder_in_missing_language(d: Any) -> None:
        d["study"]["supported_languages"] = ["fr"]
        d["consent_forms"] = []

    assert all(
        field.startswith("schedule.events.0.reminders")
        for field in await fields_of(changed(reminder_in_missing_language))
    )

    not_object = await _apply_document(client, researcher.headers, [1, 2])
    assert not_object.status_code == 422

    code = _code()
    first = await _apply_document(client, researcher.headers, good, code)
    assert first.status_code == 201, first.text
    taken = await _apply_document(client, researcher.headers, good, code)
    assert taken.status_code == 409, taken.text
