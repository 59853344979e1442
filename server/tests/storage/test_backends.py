"""The file storage contract, on both backends: the local directory and an S3 bucket (moto's S3
server, a real HTTP API). Plus the settings' checks and the health check of the bucket."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from app.config import Settings, StorageBackend
from app.main import create_app
from app.services.file_storage import (
    CHUNK_BYTES,
    FileStorage,
    LocalDirectoryStorage,
    S3Storage,
    StorageArea,
    export_storage,
    report_storage,
    storage_for,
)
from tests.conftest import lifespan_client
from tests.s3 import MULTIPART_BYTES, SECRET_ACCESS_KEY, admin_client, object_keys, s3_settings

UNSAFE_KEYS = [
    "",
    "../outside",
    "a/../../outside",
    "/absolute",
    "a//b",
    "a/./b",
    ".",
    "a b",
    "a\\b",
    "key\x00",
    "x" * 256,
    "a/b/c/d/e/f",
]


@pytest.fixture(params=["local", "s3"])
def backend_settings(
    request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
) -> Settings:
    local = settings.model_copy(update={"STORAGE_DIR": tmp_path / "storage"})
    if request.param == "local":
        return local
    return s3_settings(local, request.getfixturevalue("s3_bucket"))


@pytest.fixture
def storage(backend_settings: Settings) -> FileStorage:
    return storage_for(backend_settings, StorageArea.EXPORTS)


def _file(directory: Path, data: bytes, name: str = "upload.bin") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    return path


def test_put_read_exists_delete(storage: FileStorage, tmp_path: Path) -> None:
    source = _file(tmp_path / "scratch", b"zip bytes")
    assert not storage.exists("study/job.zip")

    storage.put("study/job.zip", source)

    assert not source.exists()  # consumed
    assert storage.exists("study/job.zip")
    assert storage.read("study/job.zip") == b"zip bytes"
    assert b"".join(storage.iter_chunks("study/job.zip")) == b"zip bytes"
    storage.delete("study/job.zip")
    assert not storage.exists("study/job.zip")
    storage.delete("study/job.zip")  # a missing file is no error
    with pytest.raises(Exception):  # noqa: B017 - FileNotFoundError or S3's NoSuchKey
        storage.read("study/job.zip")


def test_put_new_list_and_delete_under(storage: FileStorage) -> None:
    storage.put_new([("p1/s1/a.json", b"{}"), ("p1/s2/b.json", b"[]"), ("p2/s1/c.json", b"1")])

    listed = list(storage.list_under(""))
    assert [f.key for f in listed] == ["p1/s1/a.json", "p1/s2/b.json", "p2/s1/c.json"]
    assert all(f.modified_at > 0 for f in listed)
    assert [f.key for f in storage.list_under("p1/")] == ["p1/s1/a.json", "p1/s2/b.json"]
    assert storage.read("p1/s2/b.json") == b"[]"

    assert storage.delete_under("p1/") == 2
    assert [f.key for f in storage.list_under("")] == ["p2/s1/c.json"]
    assert storage.delete_under("nothing/") == 0
    with pytest.raises(ValueError, match="folder prefix"):
        storage.delete_under("p2")  # a prefix is a folder: "p2" would also match "p20/"


def test_a_big_file_goes_up_in_parts_and_comes_back_in_chunks(
    storage: FileStorage, tmp_path: Path
) -> None:
    data = os.urandom(2 * MULTIPART_BYTES + 12345)
    source = _file(tmp_path / "scratch", data)

    storage.put("study/big.zip", source)

    chunks = list(storage.iter_chunks("study/big.zip"))
    assert all(len(chunk) <= CHUNK_BYTES for chunk in chunks)
    joined = b"".join(chunks)
    assert hashlib.sha256(joined).hexdigest() == hashlib.sha256(data).hexdigest()
    if isinstance(storage, S3Storage):
        head = storage.client.head_object(
            Bucket=storage.bucket, Key=f"{storage.prefix}study/big.zip"
        )
        # A multipart upload's ETag ends in the number of its parts.
        assert head["ETag"].strip('"').endswith("-3")
        assert head["ContentLength"] == len(data)


@pytest.mark.parametrize("key", UNSAFE_KEYS)
def test_unsafe_keys_are_refused(storage: FileStorage, tmp_path: Path, key: str) -> None:
    source = _file(tmp_path / "scratch", b"x")
    calls: list[Callable[[], object]] = [
        lambda: storage.put(key, source),
        lambda: storage.put_new([(key, b"x")]),
        lambda: storage.read(key),
        lambda: list(storage.iter_chunks(key)),
        lambda: storage.delete(key),
        lambda: storage.exists(key),
        lambda: storage.download_url(key, "x.zip", "application/zip"),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="unsafe storage key"):
            call()
    assert source.exists()
    assert list(storage.list_under("")) == []


def test_local_put_new_never_overwrites(tmp_path: Path) -> None:
    # On S3 the keys of source documents are unique by construction (a new id per write).
    storage = LocalDirectoryStorage(tmp_path / "sources")
    storage.put_new([("a/b.json", b"first")])
    with pytest.raises(FileExistsError):
        storage.put_new([("a/b.json", b"second")])
    assert storage.read("a/b.json") == b"first"


def test_each_area_has_its_own_place(backend_settings: Settings) -> None:
    exports, reports = export_storage(backend_settings), report_storage(backend_settings)
    exports.put_new([("same.pdf", b"export")])
    reports.put_new([("same.pdf", b"report")])
    assert exports.read("same.pdf") == b"export"
    assert reports.read("same.pdf") == b"report"
    if isinstance(exports, S3Storage):
        assert object_keys(exports.bucket) == [
            "deployment/exports/same.pdf",
            "deployment/reports/same.pdf",
        ]
        assert exports.location == f"s3://{exports.bucket}/deployment/exports/"
    else:
        assert isinstance(exports, LocalDirectoryStorage)
        assert (backend_settings.STORAGE_DIR / "reports" / "same.pdf").read_bytes() == b"report"


def test_download_url_is_signed_and_short_lived(backend_settings: Settings) -> None:
    storage = export_storage(backend_settings)
    storage.put_new([("study/job.zip", b"zip")])
    url = storage.download_url("study/job.zip", "STUDY-all.zip", "application/zip")
    if storage.backend is StorageBackend.LOCAL:
        assert url is None  # the API streams local files itself
        return
    assert url is not None
    assert "X-Amz-Expires=300" in url and "X-Amz-Signature=" in url
    assert SECRET_ACCESS_KEY not in url
    fetched = httpx.get(url)
    assert fetched.status_code == 200
    assert fetched.content == b"zip"
    assert fetched.headers["content-disposition"] == 'attachment; filename="STUDY-all.zip"'
    assert fetched.headers["content-type"] == "application/zip"


def test_s3_without_a_bucket_or_with_half_the_keys_is_refused_at_startup() -> None:
    with pytest.raises(ValidationError, match="STORAGE_BACKEND=s3 needs S3_BUCKET"):
        Settings(STORAGE_BACKEND=StorageBackend.S3)
    with pytest.raises(ValidationError, match="set together"):
        Settings(STORAGE_BACKEND=StorageBackend.S3, S3_BUCKET="b", S3_ACCESS_KEY_ID="id")
    with pytest.raises(ValidationError, match="S3_PREFIX"):
        Settings(S3_PREFIX="../up/")
    secret = Settings(
        STORAGE_BACKEND=StorageBackend.S3,
        S3_BUCKET="b",
        S3_ACCESS_KEY_ID="id",
        S3_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY,
    )
    assert SECRET_ACCESS_KEY not in repr(secret) and SECRET_ACCESS_KEY not in str(secret)


async def test_health_checks_the_bucket_without_showing_secrets(
    settings: Settings, s3_bucket: str
) -> None:
    healthy = s3_settings(settings, s3_bucket)
    async with lifespan_client(create_app(healthy)) as client:
        response = await client.get("/api/health/detailed")
    assert response.status_code == 200, response.text
    assert response.json()["dependencies"]["object_storage"]["status"] == "ok"

    missing = s3_settings(settings, "metricis-no-such-bucket")
    async with lifespan_client(create_app(missing)) as client:
        down = await client.get("/api/health/detailed")
    assert down.status_code == 503
    status = down.json()["error"]["details"]["dependencies"]["object_storage"]
    assert status["status"] == "down" and status["required"] is True
    assert SECRET_ACCESS_KEY not in down.text
    assert admin_client().list_buckets()["Buckets"]  # the server itself still answers

    # A store that does not answer at all: down at once (one attempt), not after retries.
    unreachable = s3_settings(settings, s3_bucket, S3_ENDPOINT_URL="http://127.0.0.1:5549")
    async with lifespan_client(create_app(unreachable)) as client:
        started = time.monotonic()
        refused = await client.get("/api/health/detailed")
        elapsed = time.monotonic() - started
    assert refused.status_code == 503
    status = refused.json()["error"]["details"]["dependencies"]["object_storage"]
    assert status["status"] == "down" and status["error"] == "EndpointConnectionError"
    assert elapsed < 3
