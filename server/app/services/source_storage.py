"""Source documents in storage, in step with the database (docs/assessments.md, source documents).

A document lives in the `sources` area of the file storage (app.services.file_storage: a folder
under STORAGE_DIR, or the bucket when STORAGE_BACKEND=s3). Its path, kept in the task result row
as `sources/{study}/{participant}/{session}/{task}.{result id}.json`, is the same on both
backends: one name per write, so a write that is taken back never removes another's file.

A document is written before the commit of the row that points at it, and is durable before
that commit: on the local disk the file's data and the directory entries leading to it are
fsynced; on S3 the PutObject was acknowledged. A committed row never points at a missing or
partial file. The write runs in a thread while the request goes on with its database work, and
the request waits for it just before its commit, so the write adds no latency of its own.

When the transaction does not commit, the documents it wrote are removed
(`app.db.session.undo_on_rollback`): storage and database agree. A crash between the write and
the commit, or a commit whose outcome is unknown, can leave a file no row points at; `sweep`
(`metricis storage sweep`) finds those once they are older than a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.logging import get_logger
from app.db.session import undo_on_rollback
from app.services.file_storage import FileStorage, StorageArea, StoredFile, storage_for

_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
SOURCES = StorageArea.SOURCES.value
logger = get_logger(__name__)

# The storages this process opened, by location: an after-commit handler (erasure) finds the
# one its event names without the event carrying credentials.
_opened: dict[str, SourceStorage] = {}


@dataclass(frozen=True, slots=True)
class StoredDocument:
    relative_path: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class PendingDocuments:
    """Documents being written for the current transaction; `wait` before the commit."""

    documents: list[StoredDocument]
    _writing: asyncio.Future[None]

    async def wait(self) -> list[StoredDocument]:
        await asyncio.shield(self._writing)
        return self.documents


@dataclass(frozen=True, slots=True)
class ParticipantFiles:
    study_id: uuid.UUID
    participant_id: uuid.UUID
    files: list[StoredFile]  # keys are the documents' relative paths (`sources/...`)


class SourceStorage:
    def __init__(self, files: FileStorage) -> None:
        self.files = files
        self.location = files.location
        _opened[self.location] = self

    @classmethod
    def from_settings(cls, settings: Settings) -> SourceStorage:
        return cls(storage_for(settings, StorageArea.SOURCES))

    @classmethod
    def opened_at(cls, location: str) -> SourceStorage:
        return _opened[location]

    @staticmethod
    def source_path(
        study_id: uuid.UUID,
        participant_id: uuid.UUID,
        session_id: uuid.UUID,
        task: str,
        document_id: uuid.UUID,
    ) -> str:
        """Where the source document `document_id` (its result row's id) of a task is stored:
        one name per write, so a write that is taken back never removes another's file."""
        if not _SAFE_SEGMENT.match(task):
            raise ValueError(f"unsafe task name for a path: {task!r}")
        return f"{SOURCES}/{study_id}/{participant_id}/{session_id}/{task}.{document_id.hex}.json"

    @staticmethod
    def _key(relative_path: str) -> str:
        """The key in the sources area of a path kept in a row (`sources/...`)."""
        head, _, key = relative_path.partition("/")
        if head != SOURCES or not key:
            raise ValueError("path outside the source documents")
        return key

    def write_for_transaction(
        self, session: AsyncSession, items: Sequence[tuple[str, bytes]]
    ) -> PendingDocuments:
        """Start writing `items` (relative path, bytes) for the transaction of `session`: they
        are removed again if it does not commit. Returns at once with each document's SHA-256
        and size; `PendingDocuments.wait()` before the commit."""
        documents = [
            StoredDocument(path, hashlib.sha256(data).hexdigest(), len(data))
            for path, data in items
        ]
        keyed = [(self._key(path), data) for path, data in items]
        writing = asyncio.ensure_future(asyncio.to_thread(self.files.put_new, keyed))
        paths = [path for path, _ in items]

        async def take_back() -> None:
            # Wait for the write to end first: removing before it would leave the file behind.
            with contextlib.suppress(Exception):
                await asyncio.shield(writing)
            await asyncio.to_thread(self._remove, paths)

        undo_on_rollback(session, take_back)
        return PendingDocuments(documents, writing)

    def _remove(self, paths: Sequence[str]) -> None:
        for relative_path in paths:
            self.files.delete(self._key(relative_path))
        logger.info("source_documents_removed_after_rollback", documents=len(paths))

    async def read(self, relative_path: str) -> bytes:
        return await asyncio.to_thread(self.files.read, self._key(relative_path))

    async def delete_tree(self, relative_dir: str) -> None:
        """Remove every document under the folder `relative_dir` (`sources/{study}/...`)."""
        prefix = self._key(relative_dir.rstrip("/")) + "/"
        await asyncio.to_thread(self.files.delete_under, prefix)

    def files_by_participant(self, older_than: float) -> Iterator[ParticipantFiles]:
        """The documents last modified before `older_than` (seconds since the epoch), one
        participant at a time: the whole area is listed once, in key order."""
        current: tuple[uuid.UUID, uuid.UUID] | None = None
        found: list[StoredFile] = []
        for stored in self.files.list_under(""):
            parts = stored.key.split("/")
            study_id = _as_uuid(parts[0])
            participant_id = _as_uuid(parts[1]) if len(parts) > 2 else None
            if study_id is None or participant_id is None:
                continue
            if current != (study_id, participant_id):
                if current is not None and found:
                    yield ParticipantFiles(current[0], current[1], found)
                current, found = (study_id, participant_id), []
            if stored.modified_at < older_than:
                found.append(StoredFile(f"{SOURCES}/{stored.key}", stored.modified_at))
        if current is not None and found:
            yield ParticipantFiles(current[0], current[1], found)

    def remove_files(self, relative_paths: Sequence[str]) -> None:
        """Remove orphans found by the sweep, with the (local) folders they leave empty."""
        for relative_path in relative_paths:
            self.files.delete(self._key(relative_path), prune=True)


def _as_uuid(name: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(name)
    except ValueError:
        return None
