"""An item of a batch that the database refuses leaves no source document; the others keep
theirs."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from tests.assessments.conftest import World
from tests.assessments.test_source_documents import files_under, refuse_trials, refused_trials
from tests.sync.conftest import session_item, statuses


async def test_a_refused_item_leaves_no_file_and_the_accepted_one_keeps_its_own(
    client: httpx.AsyncClient, world: World, db_session: AsyncSession, storage_dir: Path
) -> None:
    await refuse_trials(db_session)
    good = session_item(world, day=0)
    refused = session_item(world, day=1, trials=refused_trials())
    response = await client.post(
        "/api/sync", headers=world.participant, json={"items": [good, refused]}
    )
    assert statuses(response) == ["accepted", "rejected"]
    participant_dir = storage_dir / "sources" / str(world.study_id) / str(world.participant_id)
    assert len(files_under(participant_dir / good["session_id"])) == 1
    assert files_under(participant_dir / refused["session_id"]) == []
