from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.study import ConsentMode, Study
from tests.assessments.conftest import World, start
from tests.factories import simple_rt_trials

PNG = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


async def test_consent_gate_at_session_start(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World
) -> None:
    study = await db_session.get(Study, world.study_id)
    assert study is not None
    study.consent_mode = ConsentMode.BUILTIN
    await db_session.commit()

    no_form = await start(client, world)
    assert no_form.status_code == 403
    assert no_form.json()["error"]["code"] == "CONSENT_REQUIRED"
    assert no_form.json()["error"]["details"]["reason"] == "CONSENT_REQUIRED"

    form = await client.post(
        "/api/consent/forms",
        headers=world.researcher,
        json={"study_id": str(world.study_id), "language": "en", "title": "C", "content": "Text"},
    )
    form_id = form.json()["id"]
    assert (
        await client.post(f"/api/consent/forms/{form_id}/publish", headers=world.researcher)
    ).status_code == 200
    assert (await start(client, world)).status_code == 403
    signed = await client.post(
        "/api/consent/sign",
        headers=world.participant,
        json={
            "form_id": form_id,
            "signer_name": "Pat",
            "signer_role": "participant",
            "signature_image": PNG,
        },
    )
    assert signed.status_code == 201, signed.text
    assert (await start(client, world)).status_code == 201

    second = await client.post(
        "/api/consent/forms",
        headers=world.researcher,
        json={
            "study_id": str(world.study_id),
            "language": "en",
            "title": "C v2",
            "content": "New text",
            "reconsent_required": True,
        },
    )
    await client.post(f"/api/consent/forms/{second.json()['id']}/publish", headers=world.researcher)
    again = await start(client, world)
    assert again.status_code == 403
    assert again.json()["error"]["details"]["reason"] == "RECONSENT_REQUIRED"


async def test_sessions_keep_their_battery_version(client: httpx.AsyncClient, world: World) -> None:
    old = (await start(client, world)).json()
    assert old["battery"]["version"] == 1
    patched = await client.patch(
        f"/api/batteries/{world.battery_id}",
        headers=world.researcher,
        json={"tasks": [{"module_id": "flanker", "config": {}}]},
    )
    assert patched.status_code == 200, patched.text
    new = (await start(client, world)).json()
    assert new["battery"]["version"] == 2
    assert [t["module_id"] for t in new["battery"]["tasks"]] == ["flanker"]

    # A late submission to the version-1 session is accepted with version-1 tasks ...
    late = await client.post(
        "/api/submit",
        headers={**world.participant, "X-Session-ID": old["session_id"]},
        json={"session_id": old["session_id"], "trials": simple_rt_trials()},
    )
    assert late.status_code == 201, late.text
    # ... and refuses what only version 2 has.
    flanker = [{"task": "flanker", "trial_index": 0, "rt": 450, "condition": "congruent"}]
    refused = await client.post(
        "/api/submit",
        headers={**world.participant, "X-Session-ID": old["session_id"]},
        json={"session_id": old["session_id"], "trials": flanker},
    )
    assert refused.status_code == 422
    accepted = await client.post(
        "/api/submit",
        headers={**world.participant, "X-Session-ID": new["session_id"]},
        json={"session_id": new["session_id"], "trials": flanker},
    )
    assert accepted.status_code == 201
    # An offline client that still runs version 1 may start a version-1 session explicitly.
    pinned = await start(client, world, battery_version=1, session_id=str(uuid.uuid4()))
    assert pinned.status_code == 201 and pinned.json()["battery"]["version"] == 1
    # A version beyond any INTEGER column is refused before it reaches the database.
    huge = await start(client, world, battery_version=2**63, session_id=str(uuid.uuid4()))
    assert huge.status_code == 422, huge.text
    assert huge.json()["error"]["details"]["errors"][0]["field"] == "body.battery_version"
