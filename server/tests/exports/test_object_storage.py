"""Export jobs with STORAGE_BACKEND=s3 (moto's S3 server): the worker's function uploads the
file to the bucket, the API answers the download with a 307 to a signed address that a real
HTTP client follows, and deletion and the expiry sweep remove the object."""

from __future__ import annotations

import hashlib
import io
import uuid
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.models.audit import AuditEvent
from app.models.export import ExportJob
from app.services.exports.jobs import sweep_expired_exports
from tests.conftest import make_settings
from tests.exports.conftest import Runner, World, create, read_csv
from tests.s3 import S3_PORT, admin_client, object_keys, s3_settings


@pytest.fixture
def settings(database_url: str, tmp_path: Path, s3_bucket: str) -> Settings:
    """Every fixture of the module (the app, the world, the runner) on the bucket; a storage
    directory of the test's own shows that nothing lands on the local disk."""
    return s3_settings(make_settings(database_url, tmp_path / "storage"), s3_bucket)


async def _ready_job(
    client: httpx.AsyncClient, runner: Runner, world: World, body: dict[str, Any]
) -> dict[str, Any]:
    created = await create(client, world.researcher.headers, body)
    assert created.status_code == 202, created.text
    assert (await runner.run())["ready"] == 1
    job = (
        await client.get(f"/api/exports/{created.json()['id']}", headers=world.researcher.headers)
    ).json()
    assert job["status"] == "ready", job
    return dict(job)


async def test_an_export_is_uploaded_and_downloaded_through_a_signed_redirect(
    client: httpx.AsyncClient,
    world: World,
    runner: Runner,
    db_session: AsyncSession,
    settings: Settings,
    s3_bucket: str,
) -> None:
    body = {"study_id": world.study_id, "format": "csv", "dataset": "trials"}
    job = await _ready_job(client, runner, world, body)
    export_id = uuid.UUID(str(job["id"]))
    key = f"deployment/exports/{world.study_id}/{export_id.hex}.zip"
    assert object_keys(s3_bucket, "deployment/exports/") == [key]
    exports_dir = settings.STORAGE_DIR / "exports"
    # Only the (empty) scratch folder is local: the file went to the bucket.
    assert [p.name for p in exports_dir.iterdir()] == [".partial"]
    assert list((exports_dir / ".partial").iterdir()) == []

    answer = await client.get(
        f"/api/exports/{export_id}/download", headers=world.researcher.headers
    )
    assert answer.status_code == 307, answer.text
    assert answer.headers["x-content-sha256"] == job["sha256"]
    assert answer.headers["cache-control"] == "no-store"
    location = answer.headers["location"]
    assert urlsplit(location).netloc == f"127.0.0.1:{S3_PORT}"
    assert f"X-Amz-Expires={settings.S3_PRESIGN_SECONDS}" in location

    # The browser's part: follow the address, without the API's credentials.
    async with httpx.AsyncClient() as browser:
        fetched = await browser.get(location)
    assert fetched.status_code == 200, fetched.text
    assert len(fetched.content) == job["size_bytes"]
    assert hashlib.sha256(fetched.content).hexdigest() == job["sha256"]
    assert fetched.headers["content-type"] == "application/zip"
    assert fetched.headers["content-disposition"] == f'attachment; filename="{job["file_name"]}"'
    archive = zipfile.ZipFile(io.BytesIO(fetched.content))
    trials = read_csv(archive, "trials.csv")
    assert {row["participant_code"] for row in trials} == {"A1", "B1"}

    # The download is audited before the redirect, with the file's hash.
    downloaded = (
        await db_session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "export.downloaded", AuditEvent.entity_id == str(export_id)
            )
        )
    ).all()
    assert [(e.after or {})["sha256"] for e in downloaded] == [job["sha256"]]


async def test_delete_and_the_expiry_sweep_remove_the_object(
    client: httpx.AsyncClient,
    world: World,
    runner: Runner,
    db_session: AsyncSession,
    settings: Settings,
    s3_bucket: str,
) -> None:
    body = {"study_id": world.study_id, "format": "json", "dataset": "sessions"}
    deleted_job = await _ready_job(client, runner, world, body)
    expiring_job = await _ready_job(client, runner, world, body)
    prefix = f"deployment/exports/{world.study_id}/"
    assert len(object_keys(s3_bucket, prefix)) == 2

    path = f"/api/exports/{deleted_job['id']}"
    deleted = await client.delete(path, headers=world.researcher.headers)
    assert deleted.status_code == 200 and deleted.json()["status"] == "deleted"
    assert object_keys(s3_bucket, prefix) == [
        f"{prefix}{uuid.UUID(str(expiring_job['id'])).hex}.zip"
    ]
    gone = await client.get(f"{path}/download", headers=world.researcher.headers)
    assert gone.status_code == 410, gone.text

    assert await sweep_expired_exports(db_session, settings, utcnow()) == 0
    later = utcnow() + timedelta(hours=settings.EXPORT_EXPIRY_HOURS + 1)
    assert await sweep_expired_exports(db_session, settings, later) == 1
    assert object_keys(s3_bucket, prefix) == []
    row = await db_session.get(ExportJob, uuid.UUID(str(expiring_job["id"])))
    assert row is not None
    await db_session.refresh(row)
    assert row.file_path is None
    expired = await client.get(
        f"/api/exports/{expiring_job['id']}/download", headers=world.researcher.headers
    )
    assert expired.status_code == 410


async def test_an_object_missing_from_the_bucket_is_410(
    client: httpx.AsyncClient, world: World, runner: Runner, s3_bucket: str
) -> None:
    body = {"study_id": world.study_id, "format": "csv", "dataset": "trials"}
    job = await _ready_job(client, runner, world, body)
    for key in object_keys(s3_bucket, "deployment/exports/"):
        admin_client().delete_object(Bucket=s3_bucket, Key=key)
    answer = await client.get(
        f"/api/exports/{job['id']}/download", headers=world.researcher.headers
    )
    assert answer.status_code == 410
    assert answer.json()["error"]["details"] == {"status": "missing"}
