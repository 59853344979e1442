"""Source documents with STORAGE_BACKEND=s3 (moto's S3 server): a submission's document is put
in the bucket before its commit, taken back when the transaction does not commit, removed by
an erasure and found by the orphan sweep; rescoring reads it back from there."""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models.assessment import AssessmentSession, TaskResult
from app.services.audit import AuditContext
from app.services.source_documents import sweep_orphans
from app.services.source_storage import SourceStorage
from app.services.submissions import rescore_session
from tests import factories
from tests.assessments.conftest import World, start
from tests.assessments.test_source_documents import refuse_trials, refused_trials
from tests.conftest import make_settings
from tests.factories import simple_rt_trials, submit
from tests.s3 import admin_client, object_keys, s3_settings


@pytest.fixture
def settings(database_url: str, tmp_path: Path, s3_bucket: str) -> Settings:
    return s3_settings(make_settings(database_url, tmp_path / "storage"), s3_bucket)


def _participant_prefix(world: World) -> str:
    return f"deployment/sources/{world.study_id}/{world.participant_id}/"


async def _result(db_session: AsyncSession, session_id: str) -> TaskResult:
    result = await db_session.scalar(
        select(TaskResult).where(TaskResult.session_id == uuid.UUID(session_id))
    )
    assert result is not None
    return result


async def test_a_submission_puts_its_source_document_in_the_bucket(
    client: httpx.AsyncClient,
    db_session: AsyncSession,
    world: World,
    settings: Settings,
    s3_bucket: str,
) -> None:
    session_id = (await start(client, world)).json()["session_id"]
    accepted = await submit(client, world.participant, session_id, {"trials": simple_rt_trials()})
    assert accepted.status_code == 201, accepted.text

    result = await _result(db_session, session_id)
    assert result.source_path.startswith(f"sources/{world.study_id}/{world.participant_id}/")
    assert object_keys(s3_bucket, "deployment/sources/") == [f"deployment/{result.source_path}"]
    stored = admin_client().get_object(Bucket=s3_bucket, Key=f"deployment/{result.source_path}")
    data = stored["Body"].read()
    assert hashlib.sha256(data).hexdigest() == result.source_sha256
    assert len(data) == result.source_bytes
    assert not (settings.STORAGE_DIR / "sources").exists()  # nothing on the local disk

    # Rescoring reads the document back from the bucket.
    record = await db_session.get(AssessmentSession, uuid.UUID(session_id))
    assert record is not None
    storage = SourceStorage.from_settings(settings)
    assert await rescore_session(db_session, storage, AuditContext.system(), record) == [
        result.task
    ]


async def test_a_submission_the_database_refuses_leaves_no_object(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World, s3_bucket: str
) -> None:
    session_id = (await start(client, world)).json()["session_id"]
    await refuse_trials(db_session)

    failed = await submit(client, world.participant, session_id, {"trials": refused_trials()})
    assert failed.status_code == 500
    assert object_keys(s3_bucket, "deployment/sources/") == []
    stored = await db_session.scalar(
        select(func.count())
        .select_from(TaskResult)
        .where(TaskResult.session_id == uuid.UUID(session_id))
    )
    assert stored == 0


async def test_erasure_removes_the_participants_objects(
    client: httpx.AsyncClient, db_session: AsyncSession, world: World, s3_bucket: str
) -> None:
    session_id = (await start(client, world)).json()["session_id"]
    submitted = await submit(client, world.participant, session_id, {"trials": simple_rt_trials()})
    assert submitted.status_code == 201
    other = await factories.start_session(
        client, world.other_participant, world.other_participant_id, world.battery_id
    )
    other_id = other.json()["session_id"]
    kept = await submit(client, world.other_participant, other_id, {"trials": simple_rt_trials()})
    assert kept.status_code == 201, kept.text
    others_prefix = f"deployment/sources/{world.study_id}/{world.other_participant_id}/"
    assert len(object_keys(s3_bucket, _participant_prefix(world))) == 1

    erased = await client.post(
        f"/api/participants/{world.participant_id}/withdraw",
        headers=world.researcher,
        json={"reason": "participant asked for erasure", "scope": "delete_data"},
    )
    assert erased.status_code == 200, erased.text
    assert object_keys(s3_bucket, _participant_prefix(world)) == []
    assert len(object_keys(s3_bucket, others_prefix)) == 1  # another participant's stay


async def test_the_sweep_finds_and_removes_orphaned_objects(
    client: httpx.AsyncClient,
    db_session: AsyncSession,
    world: World,
    settings: Settings,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session_id = (await start(client, world)).json()["session_id"]
    accepted = await submit(client, world.participant, session_id, {"trials": simple_rt_trials()})
    assert accepted.status_code == 201, accepted.text
    kept = (await _result(db_session, session_id)).source_path
    folder = kept.rsplit("/", 1)[0]
    # What a crash between the write and the commit leaves: objects no row names.
    orphans = sorted(
        [
            f"{folder}/digit-span.{uuid.uuid4().hex}.json",
            f"sources/{world.study_id}/{world.participant_id}/{uuid.uuid4()}/x.{uuid.uuid4().hex}.json",
        ]
    )
    storage = SourceStorage.from_settings(settings)
    storage.files.put_new([(path.removeprefix("sources/"), b"{}") for path in orphans])

    # S3 sets the modification time itself: the sweep runs "two days later".
    two_days_later = time.time() + 2 * 86400
    monkeypatch.setattr(time, "time", lambda: two_days_later)
    report = await sweep_orphans(db_session, storage, grace_seconds=86400, remove=False)
    assert sorted(report.orphans) == orphans
    assert report.checked == 3
    assert len(object_keys(s3_bucket, "deployment/sources/")) == 3

    removed = await sweep_orphans(db_session, storage, grace_seconds=86400, remove=True)
    assert sorted(removed.orphans) == orphans
    assert object_keys(s3_bucket, "deployment/sources/") == [f"deployment/{kept}"]
