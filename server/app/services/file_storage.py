"""Where files live: export files, reports and source documents, behind one interface.

`storage_for(settings, area)` is the one place that chooses the backend (STORAGE_BACKEND):

- `local` (the default): a folder per area under STORAGE_DIR (`exports/`, `reports/`,
  `sources/`), on this machine's disk; a write is durable (file and directory fsynced) before it
  returns.
- `s3`: an S3-compatible bucket (S3_BUCKET, S3_ENDPOINT_URL), each area under
  `{S3_PREFIX}{area}/`, so several API machines and workers share the files without a shared
  file system. A write is durable once S3 acknowledged it; large files go up in parts.

Every method blocks (disk or network): async code calls them through a thread
(`asyncio.to_thread`), never on the event loop. Keys are relative paths of safe segments
(`check_key`); nothing a caller passes can name a file outside its area.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from app.config import Settings, StorageBackend

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

CHUNK_BYTES = 256 * 1024
# Up to five segments of letters, digits, '.', '_' and '-'; '.' and '..' are refused.
_SAFE_KEY = re.compile(r"^[A-Za-z0-9._-]{1,255}(/[A-Za-z0-9._-]{1,255}){0,4}$")
_SCRATCH = ".partial"
# DeleteObjects takes at most this many keys per request.
_DELETE_BATCH = 1000


class StorageArea(StrEnum):
    EXPORTS = "exports"
    REPORTS = "reports"
    SOURCES = "sources"


@dataclass(frozen=True, slots=True)
class StoredFile:
    key: str
    modified_at: float  # seconds since the epoch


class FileStorage(Protocol):
    backend: StorageBackend
    location: str  # where the area is, for logs and health: never a secret

    def put(self, key: str, source: Path) -> None:
        """Store the finished local file `source` under `key`; the source is consumed once
        stored (after a failure it is left to the caller)."""

    def put_new(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Write each (key, bytes) under a key no earlier write used; all are durable when this
        returns (the local backend refuses a key that exists)."""

    def read(self, key: str) -> bytes: ...

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        """The stored bytes, in chunks of at most CHUNK_BYTES."""

    def delete(self, key: str, *, prune: bool = False) -> None:
        """Remove the file; a missing one is not an error. `prune`: the local folder it leaves
        empty goes too (object stores have no folders)."""

    def delete_under(self, prefix: str) -> int:
        """Remove every file whose key starts with the folder `prefix`; how many went."""

    def exists(self, key: str) -> bool: ...

    def list_under(self, prefix: str) -> Iterator[StoredFile]:
        """The files under the folder `prefix` ("" for the whole area), sorted by key within a
        folder, and a folder's files (its subfolders' too) listed together."""

    def download_url(self, key: str, file_name: str, content_type: str) -> str | None:
        """A short-lived address the file can be fetched from without the API, or None when
        the backend has none (the API streams the file then)."""


def check_key(key: str) -> str:
    if not _SAFE_KEY.match(key) or {".", ".."} & set(key.split("/")):
        raise ValueError(f"unsafe storage key: {key!r}")
    return key


def _check_prefix(prefix: str) -> str:
    """A folder prefix: "" or a safe key followed by "/"."""
    if prefix:
        if not prefix.endswith("/"):
            raise ValueError(f"a folder prefix ends with '/': {prefix!r}")
        check_key(prefix[:-1])
    return prefix


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class LocalDirectoryStorage:
    """Files in a directory on this machine (the default)."""

    backend = StorageBackend.LOCAL

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _make_directory(self, directory: Path) -> None:
        """Create `directory` and its missing parents, each entry made durable in its parent."""
        missing: list[Path] = []
        current = directory
        while not current.exists():
            missing.append(current)
            current = current.parent
        for path in reversed(missing):
            with contextlib.suppress(FileExistsError):
                path.mkdir()
            _fsync_directory(path.parent)

    def put(self, key: str, source: Path) -> None:
        target = self._path(key)
        self._make_directory(target.parent)
        with source.open("rb") as handle:
            os.fsync(handle.fileno())
        # A rename within one file system is atomic: a reader sees the whole file or none.
        shutil.move(str(source), str(target))
        _fsync_directory(target.parent)

    def put_new(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Each file written to its new name and fsynced, then each directory fsynced once."""
        directories: set[Path] = set()
        for key, data in items:
            target = self._path(key)
            if target.parent not in directories:
                self._make_directory(target.parent)
                directories.add(target.parent)
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(descriptor, view) :]
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        for directory in directories:
            _fsync_directory(directory)

    def read(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        with self._path(key).open("rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                yield chunk

    def delete(self, key: str, *, prune: bool = False) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        # Only when asked: a writer may be about to put a file in that folder (one level).
        if prune and path.parent != self.root:
            with contextlib.suppress(OSError):
                path.parent.rmdir()

    def delete_under(self, prefix: str) -> int:
        base = self.root / _check_prefix(prefix) if prefix else self.root
        if not base.is_dir():
            return 0
        removed = 0
        for path in sorted(base.rglob("*"), reverse=True):
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink()
                removed += 1
        if base != self.root:
            base.rmdir()
        return removed

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_under(self, prefix: str) -> Iterator[StoredFile]:
        base = self.root / _check_prefix(prefix) if prefix else self.root
        if not base.is_dir():
            return
        for directory, folders, files in os.walk(base):
            folders[:] = sorted(name for name in folders if not name.startswith("."))
            for name in sorted(files):
                path = Path(directory) / name
                with contextlib.suppress(FileNotFoundError):
                    modified = path.stat().st_mtime
                    yield StoredFile(path.relative_to(self.root).as_posix(), modified)

    def download_url(self, key: str, file_name: str, content_type: str) -> str | None:
        check_key(key)
        return None


class S3Storage:
    """Files in an S3-compatible bucket, under `{prefix}`."""

    backend = StorageBackend.S3

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str,
        *,
        multipart_bytes: int,
        presign_seconds: int,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.location = f"s3://{bucket}/{prefix}"
        self._presign_seconds = presign_seconds
        self._transfer = TransferConfig(
            multipart_threshold=multipart_bytes,
            multipart_chunksize=multipart_bytes,
            max_concurrency=4,
        )

    def _object(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(self, key: str, source: Path) -> None:
        # One PutObject below the threshold, a multipart upload above it (aborted on error).
        self.client.upload_file(str(source), self.bucket, self._object(key), Config=self._transfer)
        source.unlink(missing_ok=True)

    def put_new(self, items: Sequence[tuple[str, bytes]]) -> None:
        # Durable once S3 answered: it acknowledges a PutObject only after storing it.
        for key, data in items:
            self.client.put_object(Bucket=self.bucket, Key=self._object(key), Body=data)

    def read(self, key: str) -> bytes:
        response = self.client.get_object(Bucket=self.bucket, Key=self._object(key))
        return response["Body"].read()

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        response = self.client.get_object(Bucket=self.bucket, Key=self._object(key))
        body = response["Body"]
        try:
            yield from body.iter_chunks(CHUNK_BYTES)
        finally:
            body.close()

    def delete(self, key: str, *, prune: bool = False) -> None:
        # DeleteObject succeeds for a key that does not exist.
        self.client.delete_object(Bucket=self.bucket, Key=self._object(key))

    def delete_under(self, prefix: str) -> int:
        keys = [stored.key for stored in self.list_under(prefix)]
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            answer = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": self.prefix + key} for key in batch], "Quiet": True},
            )
            # Quiet: only the keys that could not be deleted are listed.
            if answer.get("Errors"):
                codes = sorted({error.get("Code", "?") for error in answer["Errors"]})
                raise OSError(f"{len(answer['Errors'])} objects not deleted: {', '.join(codes)}")
        return len(keys)

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._object(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def list_under(self, prefix: str) -> Iterator[StoredFile]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + _check_prefix(prefix)
        )
        for page in pages:
            for item in page.get("Contents", []):
                key = item["Key"][len(self.prefix) :]
                yield StoredFile(key, item["LastModified"].timestamp())

    def download_url(self, key: str, file_name: str, content_type: str) -> str | None:
        return self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": self._object(key),
                "ResponseContentDisposition": f'attachment; filename="{file_name}"',
                "ResponseContentType": content_type,
            },
            ExpiresIn=self._presign_seconds,
        )


# One client per configuration for the process: creating one takes tens of milliseconds, and a
# client is safe to share between threads.
_clients: dict[tuple[Any, ...], S3Client] = {}
_clients_lock = threading.Lock()


def s3_client(settings: Settings, *, probe: bool = False) -> S3Client:
    """The process's client for these settings. `probe`: one attempt with short timeouts, for
    the health check, so a store that is down never holds a thread for long."""
    secret = settings.S3_SECRET_ACCESS_KEY
    identity = (
        settings.S3_ENDPOINT_URL,
        settings.S3_REGION,
        settings.S3_ACCESS_KEY_ID,
        secret.get_secret_value() if secret is not None else None,
        probe,
    )
    with _clients_lock:
        client = _clients.get(identity)
        if client is None:
            # Checksums beyond what S3 requires (boto3's default since 1.36, sent as trailers
            # with chunked bodies) are refused by several S3-compatible stores; Amazon S3 itself
            # takes them. TLS still protects the bytes on the way.
            checksums: Literal["when_required", "when_supported"] = (
                "when_required" if settings.S3_ENDPOINT_URL else "when_supported"
            )
            config = BotoConfig(
                signature_version="s3v4",
                request_checksum_calculation=checksums,
                response_checksum_validation=checksums,
                connect_timeout=2 if probe else 5,
                read_timeout=2 if probe else 60,
                retries={"max_attempts": 1 if probe else 4, "mode": "standard"},
                # Another S3-compatible store is addressed by path (bucket in the path, not
                # the host name), which works without a DNS name per bucket.
                s3={"addressing_style": "path" if settings.S3_ENDPOINT_URL else "auto"},
            )
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=settings.S3_ENDPOINT_URL,
                region_name=settings.S3_REGION,
                aws_access_key_id=settings.S3_ACCESS_KEY_ID,
                aws_secret_access_key=identity[3],
                config=config,
            )
            _clients[identity] = client
        return client


def storage_for(settings: Settings, area: StorageArea) -> FileStorage:
    """The storage of `area` with the configured backend."""
    if settings.STORAGE_BACKEND is StorageBackend.S3:
        assert settings.S3_BUCKET is not None  # the settings refuse s3 without a bucket
        return S3Storage(
            s3_client(settings),
            settings.S3_BUCKET,
            f"{settings.S3_PREFIX}{area.value}/",
            multipart_bytes=settings.S3_MULTIPART_BYTES,
            presign_seconds=settings.S3_PRESIGN_SECONDS,
        )
    return LocalDirectoryStorage(settings.STORAGE_DIR / area.value)


def check_object_storage(settings: Settings) -> None:
    """HeadBucket on the configured bucket (blocking): it exists and the credentials may use it."""
    assert settings.S3_BUCKET is not None
    s3_client(settings, probe=True).head_bucket(Bucket=settings.S3_BUCKET)


def export_storage(settings: Settings) -> FileStorage:
    return storage_for(settings, StorageArea.EXPORTS)


def report_storage(settings: Settings) -> FileStorage:
    return storage_for(settings, StorageArea.REPORTS)


def scratch_dir(settings: Settings, area: StorageArea = StorageArea.EXPORTS) -> Path:
    """Local room for files being written: on the local backend the same file system as the
    area (the finished file is renamed into place), on S3 the file uploaded from."""
    path = settings.STORAGE_DIR / area.value / _SCRATCH
    path.mkdir(parents=True, exist_ok=True)
    return path
