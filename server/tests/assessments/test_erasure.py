from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.assessment import AssessmentSession, TaskResult, Trial
from app.models.audit import AuditEvent
from tests.assessments.conftest import World, start
from tests.factories import simple_rt_trials, submit


async def test_delete_data_erases_sessions_trials_and_source_documents(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World, storage_dir: Path
) -> None:
    session_id = (await start(client, world)).json()["session_id"]
    submitted = await submit(client, world.participant, session_id, {"trials": simple_rt_trials()})
    assert submitted.status_code == 201
    source_dir = storage_dir / "sources" / str(world.study_id) / str(world.participant_id)
    assert any(source_dir.rglob("*.json"))

    erased = await client.post(
        f"/api/participants/{world.participant_id}/withdraw",
        headers=world.researcher,
        json={"reason": "participant asked for erasure", "scope": "delete_data"},
    )
    assert erased.status_code == 200, erased.text
    session_key = uuid.UUID(session_id)
    for model, column in (
        (AssessmentSession, AssessmentSession.id),
        (TaskResult, TaskResult.session_id),
        (Trial, Trial.session_id),
    ):
        remaining = await db_session.scalar(
            select(func.count()).select_from(model).where(column == session_key)
        )
        assert remaining == 0, model
    assert not source_dir.exists()
    event = await db_session.scalar(
        select(AuditEvent).where(
            AuditEvent.action == "participant.withdrawn",
            AuditEvent.entity_id == str(world.participant_id),
        )
    )
    assert event is not None and event.after is not None
    assert event.after["erased"]["sessions"] == 1
    assert event.after["erased"]["trials"] == 10
    # The participant's token stops working.
    after = await client.get("/api/sessions", headers=world.participant)
    assert after.status_code == 401
