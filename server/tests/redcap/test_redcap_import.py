"""Importing participants from REDCap: records exported through PyCap over real HTTP become
participants (created with their visits planned, or updated), with a report of every record;
filters by field and by event; skipped records say why; a second import changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import AuditEvent
from app.models.participant import Participant
from tests.redcap.conftest import OTHER_TOKEN, TOKEN, Team, configure, enroll
from tests.redcap.emulator import EmulatedProject, Emulator, metadata_rows
from tests.schedules.conftest import event, visits_of

IMPORT_FIELDS = ["record_id", "srt_median", "srt_n", "consent_date", "lang", "cohort"]


def _seed(project: EmulatedProject, rows: dict[tuple[str, str], dict[str, str]]) -> None:
    project.fields = metadata_rows(IMPORT_FIELDS)
    project.records.update(rows)


async def _import(
    client: httpx.AsyncClient, team: Team, body: dict[str, Any], **params: str
) -> httpx.Response:
    return await client.post(
        f"{team.redcap}/import-participants", headers=team.researcher, json=body, params=params
    )


async def _participant(db_session: AsyncSession, code: str) -> Participant | None:
    found: Participant | None = await db_session.scalar(
        select(Participant)
        .where(Participant.participant_code == code)
        .execution_options(populate_existing=True)
    )
    return found


async def test_records_become_participants_with_a_report_of_every_one(
    client: httpx.AsyncClient, team: Team, emulator: Emulator, db_session: AsyncSession
) -> None:
    _seed(
        emulator.projects[TOKEN],
        {
            ("P-101", ""): {"consent_date": "2026-11-20", "lang": "en", "cohort": "A"},
            ("P-102", ""): {"consent_date": "2026-11-21", "cohort": "A"},
            ("bad id!", ""): {"cohort": "A"},
            ("P-104", ""): {"lang": "xx", "cohort": "A"},
            ("P-103", ""): {"cohort": "B"},
        },
    )
    schedule = await client.post(
        "/api/schedules",
        headers=team.researcher,
        json={
            "study_id": str(team.study_id),
            "events": [event("baseline", 0, team.battery_id, after=7)],
        },
    )
    assert schedule.status_code == 201, schedule.text
    await configure(client, team, emulator)
    existing = await enroll(client, team, "P-102")

    body = {
        "filter_field": "cohort",
        "filter_value": "A",
        "field_mapping": {"enrollment_date": "consent_date", "language": "lang"},
    }
    response = await _import(client, team, body)
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["created"], report["updated"], report["skipped"]) == (1, 1, 2)
    rows = {row["record"]: row for row in report["rows"]}
    assert set(rows) == {"P-101", "P-102", "bad id!", "P-104"}  # P-103 is of cohort B
    assert rows["P-101"]["status"] == "created"
    assert rows["P-102"] == {
        "record": "P-102",
        "status": "updated",
        "participant_id": existing["id"],
        "message": None,
    }
    assert rows["bad id!"]["status"] == "skipped"
    assert "participant code" in rows["bad id!"]["message"]
    assert rows["P-104"]["status"] == "skipped" and "'xx'" in rows["P-104"]["message"]

    created = await _participant(db_session, "P-101")
    assert created is not None and str(created.id) == rows["P-101"]["participant_id"]
    assert created.enrollment_date is not None
    assert created.enrollment_date.isoformat() == "2026-11-20"
    assert len(await visits_of(client, team.researcher, str(created.id))) == 1
    updated = await _participant(db_session, "P-102")
    assert updated is not None and updated.enrollment_date is not None
    assert updated.enrollment_date.isoformat() == "2026-11-21"
    assert await _participant(db_session, "P-104") is None

    [audit] = (
        await db_session.scalars(
            select(AuditEvent).where(AuditEvent.action == "redcap.import_participants")
        )
    ).all()
    assert audit.after is not None
    assert (audit.after["created"], audit.after["updated"], audit.after["skipped"]) == (1, 1, 2)

    # The same import again finds nothing to do.
    again = (await _import(client, team, body)).json()
    assert (again["created"], again["updated"], again["skipped"]) == (0, 0, 4)
    assert {row["message"] for row in again["rows"] if row["record"].startswith("P-10")} >= {
        "Nothing to change"
    }


async def test_an_event_narrows_a_longitudinal_import_and_a_site_project_enrolls_there(
    client: httpx.AsyncClient, team: Team, emulator: Emulator, db_session: AsyncSession
) -> None:
    project = emulator.add(
        EmulatedProject(
            token=OTHER_TOKEN,
            fields=metadata_rows(["record_id", "srt_median"]),
            events=["screening_arm_1", "baseline_arm_1"],
            records={
                ("LY-1", "screening_arm_1"): {"srt_median": "1"},
                ("LY-1", "baseline_arm_1"): {"srt_median": "2"},
                ("LY-2", "screening_arm_1"): {"srt_median": "3"},
                ("LY-3", "baseline_arm_1"): {"srt_median": "4"},
            },
        )
    )
    await configure(
        client,
        team,
        emulator,
        site_id=team.site_id,
        api_token=OTHER_TOKEN,
        field_mapping={"simple-rt.median_rt": "srt_median"},
        event_mapping={"baseline": "baseline_arm_1"},
    )
    response = await _import(client, team, {"event": "baseline_arm_1"}, site_id=str(team.site_id))
    assert response.status_code == 200, response.text
    assert sorted(row["record"] for row in response.json()["rows"]) == ["LY-1", "LY-3"]
    assert response.json()["created"] == 2
    for code in ("LY-1", "LY-3"):
        participant = await _participant(db_session, code)
        assert participant is not None and participant.site_id == team.site_id
    assert await _participant(db_session, "LY-2") is None
    assert project.imports == []  # an import reads REDCap, it writes nothing there


async def test_an_unreachable_project_or_a_missing_configuration_is_refused(
    client: httpx.AsyncClient, team: Team, emulator: Emulator
) -> None:
    assert (await _import(client, team, {})).status_code == 404
    await configure(client, team, emulator)
    unknown = await _import(client, team, {"field_mapping": {"language": "no_such_field"}})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"]["reason"] == "REDCAP_ERROR"
    assert "no_such_field" in unknown.json()["error"]["message"]
    half = await _import(client, team, {"filter_field": "cohort"})
    assert half.status_code == 422
    emulator.stop()
    down = await _import(client, team, {})
    assert down.status_code == 422
    assert down.json()["error"]["details"]["reason"] == "REDCAP_UNAVAILABLE"
    coordinator = await client.post(
        f"{team.redcap}/import-participants", headers=team.coordinator, json={}
    )
    assert coordinator.status_code == 403
