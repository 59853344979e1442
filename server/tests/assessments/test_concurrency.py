"""Concurrent submissions through real, separate database sessions (no shared test session)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.config import Settings
from app.main import create_app
from app.models.assessment import TaskResult, Trial
from app.models.participant import Participant, ParticipantStatus
from app.models.study import ConsentMode, Study, StudyStatus
from app.services.audit import AuditContext
from app.services.participant_auth import open_participant_login
from tests import factories
from tests.assessments.conftest import simple_rt_trials
from tests.conftest import lifespan_client, make_settings


async def test_concurrent_identical_submissions_store_exactly_once(
    migrated_engine: AsyncEngine, database_url: str, storage_dir: Path
) -> None:
    settings: Settings = make_settings(database_url, storage_dir)
    sessionmaker = async_sessionmaker(migrated_engine, expire_on_commit=False)
    # Committed for real: the API's own connections must see it.
    async with sessionmaker() as db:
        study = Study(
            id=uuid.uuid4(),
            code=f"CONC-{uuid.uuid4().hex[:8].upper()}",
            name="Concurrency",
            status=StudyStatus.ACTIVE,
            consent_mode=ConsentMode.NONE,
            supported_languages=["en"],
            config={},
        )
        db.add(study)
        await db.flush()
        battery_id, _ = await factories.battery(db, study, ["simple-rt"])
        participant = Participant(
            id=uuid.uuid4(),
            study_id=study.id,
            participant_code="C1",
            status=ParticipantStatus.ENROLLED,
            language="en",
            timezone="UTC",
        )
        db.add(participant)
        await db.flush()
        login = await open_participant_login(
            db, settings, AuditContext.system(), participant, method="access_code"
        )
        await db.commit()
        participant_id = participant.id
    headers = {"Authorization": f"Bearer {login.access_token}"}

    async with lifespan_client(create_app(settings)) as client:
        started = await client.post(
            "/api/session/start",
            headers=headers,
            json={"participant_id": str(participant_id), "battery_id": str(battery_id)},
        )
        assert started.status_code == 201, started.text
        session_id = started.json()["session_id"]
        body = {"session_id": session_id, "trials": simple_rt_trials(50)}
        responses = await asyncio.gather(
            *(
                client.post(
                    "/api/submit", headers={**headers, "X-Session-ID": session_id}, json=body
                )
                for _ in range(6)
            )
        )
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 200, 201]
    texts = {r.text for r in responses}
    assert len(texts) == 1, texts
    async with sessionmaker() as db:
        session_uuid = uuid.UUID(session_id)
        results = await db.scalar(
            select(func.count())
            .select_from(TaskResult)
            .where(TaskResult.session_id == session_uuid)
        )
        trials = await db.scalar(
            select(func.count()).select_from(Trial).where(Trial.session_id == session_uuid)
        )
    assert (results, trials) == (1, 50)
