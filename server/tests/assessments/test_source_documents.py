"""Source documents and the database agree: a submission that does not commit leaves no file,
and `sweep_orphans` finds the files a crash left behind. And the submission path's statements."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.models.assessment import TaskResult
from app.services.file_storage import LocalDirectoryStorage
from app.services.source_documents import sweep_orphans
from app.services.source_storage import SourceStorage
from tests.assessments.conftest import World, start
from tests.factories import simple_rt_trials, submit

REFUSED_INDEX = 900  # trials at or above this index are refused by the database (refuse_trials)


async def refuse_trials(db_session: AsyncSession) -> None:
    """A trigger that makes the database refuse a trial, after the submission has written its
    source document: a real database error in the middle of the transaction. Rolled back with
    the test's outer transaction."""
    connection = await db_session.connection()
    if connection.dialect.name == "postgresql":
        await db_session.execute(
            text(
                "CREATE FUNCTION test_refuse_trial() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN IF NEW.trial_index >= {REFUSED_INDEX} THEN "
                "RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$"
            )
        )
        await db_session.execute(
            text(
                "CREATE TRIGGER test_refuse_trial BEFORE INSERT ON trials "
                "FOR EACH ROW EXECUTE FUNCTION test_refuse_trial()"
            )
        )
    else:
        await db_session.execute(
            text(
                "CREATE TRIGGER test_refuse_trial BEFORE INSERT ON trials "
                f"WHEN NEW.trial_index >= {REFUSED_INDEX} "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )
        )


def refused_trials() -> list[dict[str, object]]:
    trials = simple_rt_trials()
    trials[-1]["trial_index"] = REFUSED_INDEX
    return trials


def files_under(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*") if path.is_file())


async def test_a_submission_the_database_refuses_leaves_no_source_document(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World, storage_dir: Path
) -> None:
    session_id = (await start(client, world)).json()["session_id"]
    session_dir = (
        storage_dir / "sources" / str(world.study_id) / str(world.participant_id) / session_id
    )
    await refuse_trials(db_session)

    failed = await submit(client, world.participant, session_id, {"trials": refused_trials()})
    assert failed.status_code == 500
    assert files_under(session_dir) == []
    stored = await db_session.scalar(
        select(func.count())
        .select_from(TaskResult)
        .where(TaskResult.session_id == uuid.UUID(session_id))
    )
    assert stored == 0

    # The device sends it again, accepted this time: one document, the one the row names.
    accepted = await submit(client, world.participant, session_id, {"trials": simple_rt_trials()})
    assert accepted.status_code == 201, accepted.text
    result = await db_session.scalar(
        select(TaskResult).where(TaskResult.session_id == uuid.UUID(session_id))
    )
    assert result is not None
    assert files_under(session_dir) == [storage_dir / result.source_path]
    data = (storage_dir / result.source_path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == result.source_sha256
    assert len(data) == result.source_bytes


async def test_sweep_reports_and_removes_only_old_files_no_row_names(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World, storage_dir: Path
) -> None:
    session_id = (await start(client, world)).json()["session_id"]
    accepted = await submit(client, world.participant, session_id, {"trials": simple_rt_trials()})
    assert accepted.status_code == 201, accepted.text
    result = await db_session.scalar(
        select(TaskResult).where(TaskResult.session_id == uuid.UUID(session_id))
    )
    assert result is not None
    kept = storage_dir / result.source_path
    session_dir = kept.parent
    # What a crash between the write and the commit leaves: a file no row names.
    old_orphan = session_dir / f"cpt-go-nogo.{uuid.uuid4().hex}.json"
    young_orphan = session_dir / f"digit-span.{uuid.uuid4().hex}.json"
    lost_session_dir = session_dir.parent / str(uuid.uuid4())
    lost_session_dir.mkdir()
    lost_session = lost_session_dir / f"simple-rt.{uuid.uuid4().hex}.json"
    two_days_ago = time.time() - 2 * 86400
    for path in (old_orphan, young_orphan, lost_session):
        path.write_bytes(b"{}")
    for path in (old_orphan, lost_session, kept):
        os.utime(path, (two_days_ago, two_days_ago))
    storage = SourceStorage(LocalDirectoryStorage(storage_dir / "sources"))
    expected = sorted(
        path.relative_to(storage_dir).as_posix() for path in (old_orphan, lost_session)
    )

    report = await sweep_orphans(db_session, storage, grace_seconds=86400, remove=False)
    assert sorted(report.orphans) == expected
    assert old_orphan.exists() and lost_session.exists()

    removed = await sweep_orphans(db_session, storage, grace_seconds=86400, remove=True)
    assert sorted(removed.orphans) == expected
    assert not old_orphan.exists() and not lost_session.exists()
    assert not lost_session_dir.exists()  # the folder it leaves empty goes too
    assert kept.exists() and young_orphan.exists()
    young_orphan.unlink()

    with pytest.raises(ValueError, match="at least an hour"):
        await sweep_orphans(db_session, storage, grace_seconds=60, remove=True)


async def test_a_submission_loads_its_session_context_in_one_statement(
    client: httpx.AsyncClient, db_connection: AsyncConnection, world: World
) -> None:
    """The session, its participant, study and battery version come in one SELECT, which the
    later steps reuse; the result rows go in one INSERT without an ORM flush."""
    session_id = (await start(client, world)).json()["session_id"]
    statements: list[str] = []

    def remember(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(db_connection.sync_connection, "before_cursor_execute", remember)
    try:
        stored = await submit(client, world.participant, session_id, {"trials": simple_rt_trials()})
    finally:
        event.remove(db_connection.sync_connection, "before_cursor_execute", remember)
    assert stored.status_code == 201, stored.text
    reads = [s for s in statements if s.startswith("SELECT")]
    loads = [s for s in reads if "FROM assessment_sessions JOIN participants" in s]
    assert len(loads) == 1 and "battery_versions" in loads[0] and "studies" in loads[0]
    assert not [s for s in reads if s.startswith(("SELECT battery_versions.", "SELECT studies."))]
    assert len([s for s in reads if s.startswith("SELECT participants.")]) == 0
    assert len([s for s in statements if s.startswith("INSERT INTO task_results")]) == 1
