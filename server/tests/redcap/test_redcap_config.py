"""REDCap configuration through the API: saved only once the REDCap project (reached over real
HTTP through PyCap) has every mapped field and event; the token stored encrypted and never
returned or audited; the connection test; who may do it; per-site overrides."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import AuditEvent
from app.models.redcap import RedcapProject
from app.models.study import Study
from tests.redcap.conftest import (
    MAPPING,
    OTHER_TOKEN,
    TOKEN,
    Team,
    config_body,
    configure,
)
from tests.redcap.emulator import VERSION, EmulatedProject, Emulator, metadata_rows


async def test_a_configuration_is_checked_saved_and_read_without_its_token(
    client: httpx.AsyncClient, team: Team, emulator: Emulator, db_session: AsyncSession
) -> None:
    response = await client.put(
        f"{team.redcap}/config", headers=team.researcher, json=config_body(emulator)
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert TOKEN not in response.text
    assert body["token_set"] is True and "api_token" not in body
    assert body["field_mapping"] == MAPPING and body["event_mapping"] == {}
    assert (body["project_title"], body["redcap_version"]) == ("Metricis test project", VERSION)
    assert body["longitudinal"] is False and body["checked_at"] is not None
    # The check called the project: information, version and metadata.
    assert {"project", "version", "metadata"} <= set(emulator.calls)

    row = await db_session.scalar(
        select(RedcapProject).where(RedcapProject.id == uuid.UUID(body["id"]))
    )
    assert row is not None and TOKEN not in row.token_encrypted
    study = await db_session.get(Study, team.study_id)
    assert study is not None and study.redcap_enabled is True

    read = await client.get(f"{team.redcap}/config", headers=team.researcher)
    assert read.status_code == 200 and TOKEN not in read.text
    assert read.json()["id"] == body["id"]

    # Saved again without the token: the stored one is kept (and still works).
    without_token = config_body(emulator, enabled=False)
    del without_token["api_token"]
    again = await client.put(f"{team.redcap}/config", headers=team.researcher, json=without_token)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == body["id"] and again.json()["enabled"] is False
    await db_session.refresh(study)
    assert study.redcap_enabled is False

    audit = (
        await db_session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "redcap.configure")
            .order_by(AuditEvent.occurred_at)
        )
    ).all()
    assert len(audit) == 2
    assert all(TOKEN not in str(event.before) + str(event.after) for event in audit)
    assert audit[0].after is not None and audit[0].after["token_changed"] is True
    assert audit[1].after is not None and audit[1].after["token_changed"] is False


async def test_fields_and_events_the_project_lacks_are_named_in_a_422(
    client: httpx.AsyncClient, team: Team, emulator: Emulator
) -> None:
    unknown = config_body(
        emulator,
        field_mapping={**MAPPING, "digit-span.span": "ds_longest", "cpt.d_prime": "cpt_dp"},
    )
    response = await client.put(f"{team.redcap}/config", headers=team.researcher, json=unknown)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["details"]["reason"] == "REDCAP_MAPPING_UNKNOWN"
    assert "ds_longest" in error["message"] and "cpt_dp" in error["message"]
    fields = {item["field"] for item in error["details"]["errors"]}
    assert fields == {"field_mapping.digit-span.span", "field_mapping.cpt.d_prime"}

    wrong_id = config_body(emulator, record_id_field="srt_median")
    response = await client.put(f"{team.redcap}/config", headers=team.researcher, json=wrong_id)
    assert response.status_code == 422
    assert "record_id" in response.json()["error"]["details"]["errors"][0]["message"]

    # A classic project has no events to map visits to.
    events = config_body(emulator, event_mapping={"baseline": "baseline_arm_1"})
    response = await client.put(f"{team.redcap}/config", headers=team.researcher, json=events)
    assert response.status_code == 422
    assert response.json()["error"]["details"]["errors"][0]["field"] == "event_mapping"

    # Nothing was saved.
    assert (await client.get(f"{team.redcap}/config", headers=team.researcher)).status_code == 404


async def test_a_longitudinal_project_needs_known_events(
    client: httpx.AsyncClient, team: Team, emulator: Emulator
) -> None:
    project = emulator.add(
        EmulatedProject(
            token=OTHER_TOKEN,
            fields=metadata_rows(["record_id", "srt_median", "srt_n"]),
            events=["baseline_arm_1", "week_4_arm_1"],
        )
    )
    body = config_body(emulator, api_token=OTHER_TOKEN)
    missing = await client.put(f"{team.redcap}/config", headers=team.researcher, json=body)
    assert missing.status_code == 422
    assert missing.json()["error"]["details"]["errors"][0]["field"] == "event_mapping"

    body["event_mapping"] = {"baseline": "baseline_arm_1", "week-4": "week_8_arm_1"}
    unknown = await client.put(f"{team.redcap}/config", headers=team.researcher, json=body)
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"]["errors"] == [
        {
            "field": "event_mapping.week-4",
            "message": "'week_8_arm_1' is not an event of the REDCap project",
        }
    ]

    # Week 4 collects another instrument only: the scores' fields cannot go there.
    project.event_forms = {"week_4_arm_1": ["follow_up"]}
    body["event_mapping"] = {"baseline": "baseline_arm_1", "week-4": "week_4_arm_1"}
    undesignated = await client.put(f"{team.redcap}/config", headers=team.researcher, json=body)
    assert undesignated.status_code == 422
    errors = undesignated.json()["error"]["details"]["errors"]
    assert {error["field"] for error in errors} == {"event_mapping.week-4"}
    assert sorted(error["message"] for error in errors) == [
        "'srt_median' (instrument 'scores') is not collected on event 'week_4_arm_1'",
        "'srt_n' (instrument 'scores') is not collected on event 'week_4_arm_1'",
    ]

    project.event_forms = {}
    saved = await client.put(f"{team.redcap}/config", headers=team.researcher, json=body)
    assert saved.status_code == 201, saved.text
    assert saved.json()["longitudinal"] is True
    assert "formEventMapping" in emulator.calls


async def test_a_refused_token_or_an_unreachable_project_is_a_clear_422(
    client: httpx.AsyncClient, team: Team, emulator: Emulator
) -> None:
    wrong = config_body(emulator, api_token="A" * 32)
    response = await client.put(f"{team.redcap}/config", headers=team.researcher, json=wrong)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["details"]["reason"] == "REDCAP_ERROR"
    assert "You do not have permissions to use the API" in error["message"]
    assert "A" * 32 not in response.text

    emulator.stop()
    response = await client.put(
        f"{team.redcap}/config", headers=team.researcher, json=config_body(emulator)
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"]["reason"] == "REDCAP_UNAVAILABLE"

    # Shapes refused before any call: the token's, the address's.
    for bad in (
        config_body(emulator, api_token="not-a-token"),
        config_body(emulator, api_url="https://redcap.example.org/"),
        config_body(emulator, field_mapping={"no-metric": "srt_median"}),
        config_body(emulator, field_mapping={"simple-rt.median_rt": "Bad Field"}),
    ):
        response = await client.put(f"{team.redcap}/config", headers=team.researcher, json=bad)
        assert response.status_code == 422, response.text
        assert "not-a-token" not in response.text


async def test_the_first_save_needs_a_token_and_addresses_must_be_allowed(
    client: httpx.AsyncClient, team: Team, emulator: Emulator, settings: object
) -> None:
    body = config_body(emulator)
    del body["api_token"]
    response = await client.put(f"{team.redcap}/config", headers=team.researcher, json=body)
    assert response.status_code == 422
    assert response.json()["error"]["details"]["reason"] == "TOKEN_REQUIRED"

    private = config_body(emulator, api_url="http://10.1.2.3/api/")
    response = await client.put(f"{team.redcap}/config", headers=team.researcher, json=private)
    assert response.status_code == 422
    assert response.json()["error"]["details"]["reason"] == "URL_NOT_ALLOWED"


async def test_the_connection_test_reports_version_and_title_or_the_reason(
    client: httpx.AsyncClient, team: Team, emulator: Emulator
) -> None:
    assert (await client.post(f"{team.redcap}/test", headers=team.researcher)).status_code == 404
    await configure(client, team, emulator)
    response = await client.post(f"{team.redcap}/test", headers=team.researcher)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "ok": True,
        "redcap_version": VERSION,
        "project_title": "Metricis test project",
        "project_id": "4242",
        "longitudinal": False,
        "error": None,
    }
    emulator.failing = True
    failed = (await client.post(f"{team.redcap}/test", headers=team.researcher)).json()
    assert failed["ok"] is False and "HTTP 500" in failed["error"]
    emulator.failing = False
    emulator.projects.pop(TOKEN)  # the token was revoked in REDCap
    revoked = (await client.post(f"{team.redcap}/test", headers=team.researcher)).json()
    assert revoked["ok"] is False
    assert "You do not have permissions to use the API" in revoked["error"]


async def test_only_those_who_configure_the_study_reach_redcap(
    client: httpx.AsyncClient, team: Team, emulator: Emulator
) -> None:
    await configure(client, team, emulator)
    for headers, expected in ((team.coordinator, 403), (team.outsider, 404)):
        assert (await client.get(f"{team.redcap}/config", headers=headers)).status_code == expected
        put = await client.put(f"{team.redcap}/config", headers=headers, json=config_body(emulator))
        assert put.status_code == expected
        assert (await client.post(f"{team.redcap}/sync", headers=headers)).status_code == expected
        assert (await client.get(f"{team.redcap}/log", headers=headers)).status_code == expected
    assert (await client.get(f"{team.redcap}/config", headers=team.admin)).status_code == 200


async def test_a_site_has_its_own_project_beside_the_studys(
    client: httpx.AsyncClient, team: Team, emulator: Emulator
) -> None:
    emulator.add(EmulatedProject(token=OTHER_TOKEN, fields=metadata_rows(["record_id", "rt"])))
    study_level = await configure(client, team, emulator)
    site_level = await configure(
        client,
        team,
        emulator,
        site_id=team.site_id,
        api_token=OTHER_TOKEN,
        field_mapping={"simple-rt.median_rt": "rt"},
    )
    assert site_level["site_id"] == str(team.site_id) and site_level["id"] != study_level["id"]
    read = await client.get(
        f"{team.redcap}/config", headers=team.researcher, params={"site_id": str(team.site_id)}
    )
    assert read.json()["field_mapping"] == {"simple-rt.median_rt": "rt"}
    assert (await client.get(f"{team.redcap}/config", headers=team.researcher)).json()[
        "id"
    ] == study_level["id"]

    elsewhere = await client.put(
        f"{team.redcap}/config",
        headers=team.researcher,
        params={"site_id": str(uuid.uuid4())},
        json=config_body(emulator),
    )
    assert elsewhere.status_code == 404
