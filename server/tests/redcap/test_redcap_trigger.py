"""REDCap's Data Entry Trigger: a form-encoded post to the project's unguessable trigger URL
imports the saved record as a participant, through PyCap over real HTTP; a post that does not
name the configured project, or an unknown or rotated token, imports nothing."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import AuditEvent
from app.models.participant import Participant
from tests.redcap.conftest import TOKEN, Team, configure
from tests.redcap.emulator import Emulator


def _form(emulator: Emulator, record: str, **fields: str) -> dict[str, str]:
    """What REDCap posts when a record is saved."""
    return {
        "redcap_url": emulator.url.removesuffix("api/"),
        "project_url": f"{emulator.url.removesuffix('api/')}redcap_v14/index.php?pid=4242",
        "project_id": "4242",
        "username": "site_coordinator",
        "record": record,
        "instrument": "screening",
        "screening_complete": "2",
        **fields,
    }


async def _participants(db_session: AsyncSession) -> int:
    return int(await db_session.scalar(select(func.count()).select_from(Participant)) or 0)


async def _trigger(client: httpx.AsyncClient, path: str, form: dict[str, str]) -> httpx.Response:
    # No sign-in: REDCap posts the form to the URL and nothing else.
    return await client.post(path, data=form)


async def test_a_trigger_imports_the_saved_record_once(
    client: httpx.AsyncClient, team: Team, emulator: Emulator, db_session: AsyncSession
) -> None:
    config = await configure(client, team, emulator)
    path = config["trigger_path"]
    assert path.startswith("/api/redcap/trigger/") and len(path) > len("/api/redcap/trigger/") + 40
    assert TOKEN not in path
    emulator.projects[TOKEN].records[("DET-001", "")] = {"notes": "screened"}

    response = await _trigger(client, path, _form(emulator, "DET-001"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert (body["record"], body["status"]) == ("DET-001", "created")
    participant = await db_session.scalar(
        select(Participant).where(Participant.participant_code == "DET-001")
    )
    assert participant is not None and str(participant.id) == body["participant_id"]
    # Only that record was asked for.
    assert emulator.calls.count("record") == 1

    again = await _trigger(client, path, _form(emulator, "DET-001"))
    assert again.json()["status"] == "skipped"
    missing = await _trigger(client, path, _form(emulator, "DET-404"))
    assert missing.status_code == 200
    assert missing.json() == {
        "record": "DET-404",
        "status": "skipped",
        "participant_id": None,
        "message": "REDCap has no such record",
    }
    assert await _participants(db_session) == 1
    [audit, *_] = (
        await db_session.scalars(
            select(AuditEvent).where(AuditEvent.action == "participant.create")
        )
    ).all()
    assert (audit.actor_type, audit.actor_id) == ("system", "redcap-trigger")


async def test_a_trigger_that_does_not_name_the_project_imports_nothing(
    client: httpx.AsyncClient, team: Team, emulator: Emulator, db_session: AsyncSession
) -> None:
    config = await configure(client, team, emulator)
    path = config["trigger_path"]
    emulator.projects[TOKEN].records[("DET-002", "")] = {"notes": "x"}

    cases = [
        ("/api/redcap/trigger/not-the-token", _form(emulator, "DET-002"), 404),
        ("/api/redcap/trigger/" + "x" * 300, _form(emulator, "DET-002"), 404),
        (path, _form(emulator, "DET-002", project_id="9999"), 403),
        (path, {k: v for k, v in _form(emulator, "DET-002").items() if k != "project_id"}, 403),
        (path, _form(emulator, "DET-002", redcap_url="https://redcap.elsewhere.org/"), 403),
        (path, _form(emulator, ""), 422),
        (path, _form(emulator, "not a code!"), 422),
    ]
    for url, form, expected in cases:
        response = await _trigger(client, url, form)
        assert response.status_code == expected, (url, form, response.text)
        assert "error" in response.json()
    assert await _participants(db_session) == 0
    assert "record" not in emulator.calls  # REDCap was never asked

    # Paused: refused, nothing imported.
    await configure(client, team, emulator, enabled=False)
    paused = await _trigger(client, path, _form(emulator, "DET-002"))
    assert paused.status_code == 409
    assert await _participants(db_session) == 0


async def test_rotating_the_trigger_retires_the_old_url(
    client: httpx.AsyncClient, team: Team, emulator: Emulator, db_session: AsyncSession
) -> None:
    old = (await configure(client, team, emulator))["trigger_path"]
    emulator.projects[TOKEN].records[("DET-003", "")] = {"notes": "x"}
    coordinator = await client.post(
        f"{team.redcap}/config/rotate-trigger", headers=team.coordinator
    )
    assert coordinator.status_code == 403
    rotated = await client.post(f"{team.redcap}/config/rotate-trigger", headers=team.researcher)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["trigger_path"]
    assert new != old
    # A later save keeps the trigger URL.
    assert (await configure(client, team, emulator))["trigger_path"] == new
    assert (await _trigger(client, old, _form(emulator, "DET-003"))).status_code == 404
    assert (await _trigger(client, new, _form(emulator, "DET-003"))).json()["status"] == "created"
    rotations = await db_session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.action == "redcap.trigger_rotated")
    )
    assert rotations == 1
