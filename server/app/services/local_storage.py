"""Source documents on disk, in step with the database (docs/assessments.md, source documents).

A document is written under a name no other write uses (`{task}.{result id}.json`), before the
commit of the row that points at it, and made durable (the file's data and the directory
entries leading to it fsynced) before that commit: a committed row never points at a missing or
partial file. The write runs in a thread while the request goes on with its database work, and
the request waits for it just before its commit, so the fsyncs add no latency of their own.

When the transaction does not commit, the documents it wrote are removed
(`app.db.session.undo_on_rollback`): storage and database agree. A crash between the write and
the commit, or a commit whose outcome is unknown, can leave a file no row points at; `sweep`
(`metricis storage sweep`) finds those once they are older than a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.logging import get_logger
from app.db.session import undo_on_rollback

_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
SOURCES = "sources"
logger = get_logger(__name__)


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


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

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

    def _absolute(self, relative_path: str) -> Path:
        path = (self.root / relative_path).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError("path escapes the storage directory")
        return path

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

    def _write_new(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Write each document to its (new) name, fsync each file, then each directory once."""
        directories: set[Path] = set()
        for relative_path, data in items:
            target = self._absolute(relative_path)
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
        writing = asyncio.ensure_future(asyncio.to_thread(self._write_new, list(items)))
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
            self._absolute(relative_path).unlink(missing_ok=True)
        logger.info("source_documents_removed_after_rollback", documents=len(paths))

    async def read(self, relative_path: str) -> bytes:
        return await asyncio.to_thread(self._absolute(relative_path).read_bytes)

    async def delete_tree(self, relative_dir: str) -> None:
        def remove() -> None:
            base = self._absolute(relative_dir)
            if not base.exists():
                return
            for path in sorted(base.rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()
            base.rmdir()

        await asyncio.to_thread(remove)

    def participant_directories(self) -> list[tuple[uuid.UUID, uuid.UUID, Path]]:
        """(study id, participant id, directory) of every participant folder of sources."""
        found: list[tuple[uuid.UUID, uuid.UUID, Path]] = []
        base = self.root / SOURCES
        if not base.is_dir():
            return found
        for study in sorted(base.iterdir()):
            for participant in sorted(study.iterdir()) if study.is_dir() else []:
                study_id, participant_id = _as_uuid(study.name), _as_uuid(participant.name)
                if study_id and participant_id and participant.is_dir():
                    found.append((study_id, participant_id, participant))
        return found

    def files_older_than(self, directory: Path, seconds: float) -> list[str]:
        """Relative paths of the files under `directory` last modified over `seconds` ago."""
        cutoff = time.time() - seconds
        return [
            path.relative_to(self.root).as_posix()
            for path in sorted(directory.rglob("*"))
            if path.is_file() and path.stat().st_mtime < cutoff
        ]

    def remove_files(self, relative_paths: Sequence[str]) -> None:
        for relative_path in relative_paths:
            path = self._absolute(relative_path)
            path.unlink(missing_ok=True)
            # Empty folders left behind go too, up to the participant's.
            with contextlib.suppress(OSError):
                path.parent.rmdir()


def _as_uuid(name: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(name)
    except ValueError:
        return None


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
