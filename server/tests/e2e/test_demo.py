"""`metricis demo` shows the whole product: seeded on the test database, then used through the API
only, as someone following the printed instructions would."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.security import FieldEncryptor
from app.models.assessment import AssessmentSession, TaskResult
from app.models.audit import AuditEvent
from app.models.battery import Battery
from app.models.consent import ConsentForm, ConsentRecord
from app.models.schedule import Schedule, Visit
from app.services.demo.content import CONSENT_ANSWERS, demo_trials, signature_data_uri
from app.services.demo.seed import (
    DEMO_PASSWORD,
    DemoSummary,
    seed_demo,
)
from app.services.session_store import MemorySessionStore
from app.services.source_storage import SourceStorage

BATTERY_TASKS = ["digit-span", "flanker", "simple-rt"]


async def _seed(db_session: AsyncSession, settings: Settings) -> DemoSummary:
    summary = await seed_demo(
        db_session,
        settings,
        FieldEncryptor.from_settings(settings),
        MemorySessionStore(),
        SourceStorage.from_settings(settings),
    )
    await db_session.commit()
    return summary


async def _participant_sign_in(client: httpx.AsyncClient, summary: DemoSummary) -> httpx.Response:
    return await client.post(
        "/api/auth/participant",
        json={
            "study_code": summary.study_code,
            "participant_id": summary.participant_code,
            "access_code": summary.access_code,
        },
    )


async def _counts(db_session: AsyncSession) -> dict[str, int]:
    return {
        model.__name__: int(await db_session.scalar(select(func.count()).select_from(model)) or 0)
        for model in (
            ConsentForm,
            ConsentRecord,
            Battery,
            AssessmentSession,
            TaskResult,
            Schedule,
            Visit,
        )
    }


def _bearer(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_the_printed_participant_signs_consents_and_completes_the_battery(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> None:
    summary = await _seed(db_session, settings)
    assert summary.created and summary.access_code is not None
    assert summary.participant_must_sign_consent

    signed_in = await _participant_sign_in(client, summary)
    participant = _bearer(signed_in)
    participant_id = signed_in.json()["participant"]["id"]

    status = await client.get("/api/consent/status", headers=participant)
    assert status.status_code == 200, status.text
    assert status.json()["required"] is True
    assert status.json()["signed_version"] is None
    form = status.json()["current_form"]
    assert form["status"] == "published" and form["requires_signature"] is True
    assert {question["id"] for question in form["questions"]} == set(CONSENT_ANSWERS)

    manifest = await client.get("/api/sync/manifest", headers=participant)
    assert manifest.status_code == 200, manifest.text
    [battery] = manifest.json()["batteries"]
    assert battery["id"] == str(summary.battery_id)
    assert sorted(task["module_id"] for task in battery["tasks"]) == BATTERY_TASKS
    # The schedule: the baseline is open now, the six monthly visits come after it.
    visits = manifest.json()["visits"]
    assert [(v["event_key"], v["occurrence"], v["status"]) for v in visits] == [
        ("baseline", 1, "open"),
        *[("monthly", n, "scheduled") for n in range(1, 7)],
    ]
    baseline = visits[0]

    refused = await client.post(
        "/api/session/start",
        headers=participant,
        json={"participant_id": participant_id, "battery_id": battery["id"]},
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["details"]["reason"] == "CONSENT_REQUIRED"

    signed = await client.post(
        "/api/consent/sign",
        headers=participant,
        json={
            "form_id": form["id"],
            "signer_name": "Sam Example",
            "signer_role": "participant",
            "answers": {"agree": True, "future_contact": "no"},
            "signature_image": signature_data_uri(),
        },
    )
    assert signed.status_code == 201, signed.text
    status = await client.get("/api/consent/status", headers=participant)
    assert status.json()["signed_version"] == form["version"]

    started = await client.post(
        "/api/session/start",
        headers=participant,
        json={
            "participant_id": participant_id,
            "battery_id": battery["id"],
            "visit_id": baseline["id"],
        },
    )
    assert started.status_code == 201, started.text
    session_id = started.json()["session_id"]
    submitted = await client.post(
        "/api/submit",
        headers={**participant, "X-Session-ID": session_id},
        json={
            "session_id": session_id,
            "trials": demo_trials(seed=7),
            "device_info": {"screen": [390, 844], "input": "touch"},
        },
    )
    assert submitted.status_code == 201, submitted.text
    receipt = submitted.json()
    assert sorted(receipt["tasks_stored"]) == BATTERY_TASKS
    assert receipt["flags"] == []
    ended = await client.post(
        "/api/session/end",
        headers=participant,
        json={"session_id": session_id, "status": "completed"},
    )
    assert ended.status_code == 200, ended.text

    read = await client.get(f"/api/session/{session_id}", headers=participant)
    assert read.status_code == 200
    assert read.json()["status"] == "completed"
    _assert_scored(read.json()["tasks"])
    visit = await client.get(f"/api/schedules/visits/{baseline['id']}", headers=participant)
    assert (visit.json()["status"], visit.json()["session_id"]) == ("completed", session_id)


def _assert_scored(tasks: list[dict[str, Any]]) -> None:
    scores = {task["task"]: task["scores"] for task in tasks}
    assert sorted(scores) == BATTERY_TASKS
    assert scores["simple-rt"]["n_trials"] == 20
    assert 200 < scores["simple-rt"]["mean_rt"] < 400
    assert scores["flanker"]["interference_rt"] > 0
    assert scores["digit-span"]["max_span_forward"] > scores["digit-span"]["max_span_backward"] > 0


async def test_staff_see_the_participant_who_completed_a_session(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> None:
    summary = await _seed(db_session, settings)
    researcher = _bearer(
        await client.post(
            "/api/auth/login",
            json={"email": "researcher@metricis.local", "password": DEMO_PASSWORD},
        )
    )
    [study] = (await client.get("/api/studies", headers=researcher)).json()["data"]
    assert study["code"] == summary.study_code
    sessions = await client.get(
        "/api/sessions", headers=researcher, params={"study_id": study["id"]}
    )
    assert sessions.status_code == 200, sessions.text
    [completed] = sessions.json()["data"]
    assert completed["participant_code"] == summary.completed_participant_code
    assert completed["status"] == "completed"
    detail = await client.get(f"/api/session/{completed['id']}", headers=researcher)
    _assert_scored(detail.json()["tasks"])
    assert all(task["flags"] == [] for task in detail.json()["tasks"])

    status = await client.get(
        "/api/consent/status",
        headers=researcher,
        params={"participant_id": completed["participant_id"]},
    )
    assert status.json()["record_id"] is not None
    pdf = await client.get(
        f"/api/consent/records/{status.json()['record_id']}/pdf", headers=researcher
    )
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"

    # The session was the participant's baseline visit; the other enrolled participants' are
    # open and show as upcoming (with the participant enrolled for the reminder demo), the
    # screened one (P004) has none.
    visits = await client.get(
        "/api/schedules/visits",
        headers=researcher,
        params={"participant_id": completed["participant_id"]},
    )
    baseline = next(v for v in visits.json()["data"] if v["event_key"] == "baseline")
    assert (baseline["status"], baseline["session_id"]) == ("completed", completed["id"])
    upcoming = await client.get(
        "/api/schedules/visits/upcoming", headers=researcher, params={"study_id": study["id"]}
    )
    assert summary.reminder_participant_code is not None
    assert sorted(v["participant_code"] for v in upcoming.json()["data"]) == sorted(
        ["P001", "P003", "P005", summary.reminder_participant_code]
    )


async def test_a_second_run_changes_nothing_but_issues_a_working_access_code(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> None:
    first = await _seed(db_session, settings)
    assert (await _participant_sign_in(client, first)).status_code == 200
    counts = await _counts(db_session)

    second = await _seed(db_session, settings)
    assert not second.created
    assert second.battery_id == first.battery_id
    assert second.access_code is not None and second.access_code != first.access_code
    assert await _counts(db_session) == counts
    issued = await db_session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.action == "participant.access_code_issued")
    )
    assert issued == 2

    assert (await _participant_sign_in(client, second)).status_code == 200
    assert (await _participant_sign_in(client, first)).status_code == 401
