"""The issue's "done when", through the API only: a coordinator sets a study up and hands a
participant an access code; the participant signs in, sees its consent, and runs an assessment."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.user import UserRole
from tests import factories

NEW_PASSWORD = "Granite-Lantern-Orbit-77"
# A 1x1 PNG, as a tablet's signature pad would send (much larger in real life).
SIGNATURE = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


async def test_coordinator_sets_up_a_study_and_a_participant_runs_it(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    registered = await client.post(
        "/api/auth/register",
        headers=admin.headers,
        json={"email": "coord@example.org", "name": "Casey Coordinator", "role": "coordinator"},
    )
    assert registered.status_code == 201
    temporary = registered.json()["temporary_password"]
    first = await client.post(
        "/api/auth/login", data={"username": "coord@example.org", "password": temporary}
    )
    assert first.json()["must_change_password"] is True
    bearer = {"Authorization": f"Bearer {first.json()['access_token']}"}
    blocked = await client.get("/api/studies", headers=bearer)
    assert blocked.status_code == 403
    changed = await client.post(
        "/api/auth/change-password",
        headers=bearer,
        json={"current_password": temporary, "new_password": NEW_PASSWORD},
    )
    assert changed.status_code == 204
    login = await client.post(
        "/api/auth/login", data={"username": "coord@example.org", "password": NEW_PASSWORD}
    )
    coordinator = {"Authorization": f"Bearer {login.json()['access_token']}"}

    study = await client.post(
        "/api/studies",
        headers=coordinator,
        json={"code": "FLOW-2026-001", "name": "Flow", "supported_languages": ["en", "fr"]},
    )
    assert study.status_code == 201, study.text
    study_id = study.json()["id"]
    site = await client.post(
        f"/api/studies/{study_id}/sites",
        headers=coordinator,
        json={"code": "LYON", "name": "Lyon", "timezone": "Europe/Paris"},
    )
    assert site.status_code == 201
    assert (
        await client.post(
            f"/api/studies/{study_id}/status", headers=coordinator, json={"status": "active"}
        )
    ).status_code == 200

    enrolled = await client.post(
        "/api/participants",
        headers=coordinator,
        json={"study_id": study_id, "participant_id": "P001", "email": "p1@example.org"},
    )
    assert enrolled.status_code == 201
    participant_id = enrolled.json()["id"]
    csv = "participant_id,site,email,language\nP002,LYON,p2@example.org,fr\nP003,LYON,,en\n"
    imported = await client.post(
        "/api/participants/import",
        headers=coordinator,
        data={"study_id": study_id, "dry_run": "false"},
        files={"file": ("participants.csv", csv.encode(), "text/csv")},
    )
    assert imported.status_code == 201, imported.text
    listing = await client.get(f"/api/participants?study_id={study_id}", headers=coordinator)
    assert listing.json()["pagination"]["total"] == 3

    form = await client.post(
        "/api/consent/forms",
        headers=coordinator,
        json={
            "study_id": study_id,
            "language": "en",
            "title": "Consent to take part",
            "content": "# Study\nYou may stop at any time.",
            "questions": [
                {
                    "id": "data",
                    "text": "I agree my data is used",
                    "type": "checkbox",
                    "required": True,
                }
            ],
        },
    )
    assert form.status_code == 201, form.text
    form_id = form.json()["id"]
    published = await client.post(f"/api/consent/forms/{form_id}/publish", headers=coordinator)
    assert published.status_code == 200, published.text

    code = await client.post(f"/api/participants/{participant_id}/access-code", headers=coordinator)
    assert code.status_code == 201
    participant_login = await client.post(
        "/api/auth/participant",
        json={
            "study_code": "FLOW-2026-001",
            "participant_id": "P001",
            "access_code": code.json()["access_code"],
        },
    )
    assert participant_login.status_code == 200, participant_login.text
    participant = {"Authorization": f"Bearer {participant_login.json()['access_token']}"}
    status = await client.get("/api/consent/status", headers=participant)
    assert status.json()["required"] is True and status.json()["signed_version"] is None

    signed = await client.post(
        "/api/consent/sign",
        headers=coordinator,
        json={
            "participant_id": participant_id,
            "form_id": form_id,
            "signer_name": "Pat One",
            "signer_role": "participant",
            "answers": {"data": True},
            "signature_image": SIGNATURE,
        },
    )
    assert signed.status_code == 201, signed.text
    status = await client.get("/api/consent/status", headers=participant)
    assert status.json()["signed_version"] == 1
    pdf = await client.get(f"/api/consent/records/{signed.json()['id']}/pdf", headers=coordinator)
    assert pdf.headers["content-type"] == "application/pdf"

    battery = await client.post(
        "/api/batteries",
        headers=coordinator,
        json={
            "study_id": study_id,
            "name": "Screening",
            "tasks": [{"module_id": "simple-rt", "config": {"n_trials": 5}}],
        },
    )
    assert battery.status_code == 201, battery.text
    started = await client.post(
        "/api/session/start",
        headers=participant,
        json={"participant_id": participant_id, "battery_id": battery.json()["id"]},
    )
    assert started.status_code == 201, started.text
    session_id = started.json()["session_id"]
    trials = [{"task": "simple-rt", "trial_index": i, "rt": 300 + 10 * i} for i in range(5)]
    receipt = await client.post(
        "/api/submit",
        headers={**participant, "X-Session-ID": session_id},
        json={"session_id": session_id, "trials": trials},
    )
    assert receipt.status_code == 201, receipt.text
    assert receipt.json()["scores"]["simple-rt"]["mean_rt"] == 320
