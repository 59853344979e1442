"""GET /api/sync/manifest: content, ETag and 304, and whose manifest a caller may read."""

from __future__ import annotations

import json
import re
import uuid

import httpx

from tests.assessments.conftest import World
from tests.factories import SIGNATURE


async def test_manifest_content_for_the_participant(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await client.get("/api/sync/manifest", headers=world.participant)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "participant",
        "study",
        "batteries",
        "modules",
        "consent",
        "visits",
        "item_banks",
    }
    assert body["participant"] == {
        "id": str(world.participant_id),
        "code": "P001",
        "study_id": str(world.study_id),
        "status": "enrolled",
        "language": "en",
        "actor": "patient",
        "timezone": "UTC",
    }
    assert body["study"]["id"] == str(world.study_id)
    assert body["study"]["consent_mode"] == "none"
    [battery] = body["batteries"]
    assert battery["id"] == str(world.battery_id)
    assert battery["version"] == 1
    assert [task["module_id"] for task in battery["tasks"]] == [
        "simple-rt",
        "cpt-go-nogo",
        "digit-span",
    ]
    assert all(task["config"] for task in battery["tasks"])
    module_ids = [module["id"] for module in body["modules"]]
    assert module_ids == ["cpt-go-nogo", "digit-span", "simple-rt"]
    assert all(module["scorer_version"] for module in body["modules"])
    assert body["consent"] == {
        "required": False,
        "current_form": None,
        "signed_version": None,
        "needs_reconsent": False,
        "withdrawn": False,
    }
    assert body["visits"] == []  # the study has no schedule (tests/schedules/test_sessions.py)
    assert body["item_banks"] == []
    # Nothing of the other participant, nothing about staff.
    text = json.dumps(body)
    assert "P002" not in text
    assert str(world.other_participant_id) not in text
    assert "created_by" not in text and "email" not in text


async def test_strong_etag_and_304(client: httpx.AsyncClient, world: World) -> None:
    first = await client.get("/api/sync/manifest", headers=world.participant)
    etag = first.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{64}"', etag)
    again = await client.get("/api/sync/manifest", headers=world.participant)
    assert again.headers["ETag"] == etag

    cached = await client.get(
        "/api/sync/manifest", headers={**world.participant, "If-None-Match": etag}
    )
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["ETag"] == etag
    listed = await client.get(
        "/api/sync/manifest",
        headers={**world.participant, "If-None-Match": f'"other", W/{etag}'},
    )
    assert listed.status_code == 304

    stale = await client.get(
        "/api/sync/manifest", headers={**world.participant, "If-None-Match": '"stale"'}
    )
    assert stale.status_code == 200
    assert stale.json() == first.json()


async def test_etag_changes_with_the_content(
    client: httpx.AsyncClient, world: World, consent_form_id: uuid.UUID
) -> None:
    before = await client.get("/api/sync/manifest", headers=world.participant)
    assert before.json()["consent"]["required"] is True
    assert before.json()["consent"]["current_form"]["id"] == str(consent_form_id)
    assert "created_by" not in before.json()["consent"]["current_form"]
    signed = await client.post(
        "/api/consent/sign",
        headers=world.participant,
        json={
            "form_id": str(consent_form_id),
            "signer_name": "Pat Example",
            "signer_role": "participant",
            "answers": {"agree": True},
            "signature_image": SIGNATURE,
        },
    )
    assert signed.status_code == 201, signed.text
    after = await client.get(
        "/api/sync/manifest",
        headers={**world.participant, "If-None-Match": before.headers["ETag"]},
    )
    assert after.status_code == 200
    assert after.headers["ETag"] != before.headers["ETag"]
    assert after.json()["consent"]["signed_version"] == 1


async def test_participant_cannot_fetch_another_participants_manifest(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await client.get(
        "/api/sync/manifest",
        headers=world.participant,
        params={"participant_id": str(world.other_participant_id)},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert response.json()["error"]["details"]["errors"][0]["field"] == "participant_id"
    own = await client.get(
        "/api/sync/manifest",
        headers=world.participant,
        params={"participant_id": str(world.participant_id)},
    )
    assert own.status_code == 200
    other = await client.get("/api/sync/manifest", headers=world.other_participant)
    assert other.json()["participant"]["code"] == "P002"


async def test_staff_read_a_participants_manifest(client: httpx.AsyncClient, world: World) -> None:
    missing = await client.get("/api/sync/manifest", headers=world.coordinator)
    assert missing.status_code == 422
    assert missing.json()["error"]["code"] == "VALIDATION_ERROR"
    unknown = await client.get(
        "/api/sync/manifest",
        headers=world.coordinator,
        params={"participant_id": str(uuid.uuid4())},
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"]["errors"][0]["field"] == "participant_id"
    # A code is read within a study: without study_id it names nobody.
    code_alone = await client.get(
        "/api/sync/manifest", headers=world.coordinator, params={"participant_id": "P001"}
    )
    assert code_alone.status_code == 422
    assert "study_id" in code_alone.json()["error"]["message"]
    own = await client.get("/api/sync/manifest", headers=world.participant)
    for params in (
        {"participant_id": str(world.participant_id)},
        {"participant_id": "P001", "study_id": str(world.study_id)},
    ):
        staff = await client.get("/api/sync/manifest", headers=world.coordinator, params=params)
        assert staff.status_code == 200, staff.text
        assert staff.json() == own.json()
        assert staff.headers["ETag"] == own.headers["ETag"]


async def test_manifest_needs_authentication(client: httpx.AsyncClient, world: World) -> None:
    response = await client.get("/api/sync/manifest")
    assert response.status_code == 401
