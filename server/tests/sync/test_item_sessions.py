"""The batch endpoint with its real per-item sessions (no test override), on a database of its
own: items commit on their own connections while the request's session has authenticated the
caller. On SQLite this is where a lock held by the request would block every item."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.config import Settings
from app.db.session import create_engine, create_sessionmaker
from app.main import create_app
from app.models.assessment import AssessmentSession, Trial
from tests import factories
from tests.assessments.conftest import World
from tests.conftest import _upgrade_with_connection, lifespan_client, make_settings
from tests.sync.conftest import session_item, statuses


@pytest.fixture
async def own_database(tmp_path: Path, storage_dir: Path) -> AsyncIterator[Settings]:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'sync.db'}", storage_dir)
    engine = create_engine(settings)
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade_with_connection)
    await engine.dispose()
    yield settings


async def test_items_commit_in_their_own_sessions(own_database: Settings) -> None:
    app = create_app(own_database)
    async with lifespan_client(app) as client:
        sessionmaker = create_sessionmaker(app.state.engine)
        async with sessionmaker() as db:
            study = await factories.active_study(db)
            battery_id, _ = await factories.battery(db, study, ["simple-rt"])
            participant = await factories.participant(db, study, "P001")
            headers = await factories.participant_headers(db, own_database, participant)
            world = World(
                study_id=study.id,
                study_code=study.code,
                battery_id=battery_id,
                participant_id=participant.id,
                other_participant_id=uuid.uuid4(),
                coordinator={},
                researcher={},
                participant=headers,
                other_participant={},
            )
        good = session_item(world)
        bad = session_item(world, trials=[{"task": "no-such-task", "trial_index": 0}])
        batch = {"items": [good, bad]}
        response = await client.post("/api/sync", headers=world.participant, json=batch)
        assert statuses(response) == ["accepted", "rejected"]
        again = await client.post("/api/sync", headers=world.participant, json=batch)
        assert statuses(again) == ["duplicate", "rejected"]
        async with sessionmaker() as db:
            assert await db.scalar(select(func.count()).select_from(AssessmentSession)) == 1
            assert await db.scalar(select(func.count()).select_from(Trial)) == 10
