"""Source documents on disk, written atomically.

A document is written to a temporary file in its final directory, flushed and fsynced, then
renamed over its final name, and the directory is fsynced: a crash leaves either the old file,
the complete new one, or a stray temporary file (never a partial document under the real name).
The database row that points at a document is committed only after the rename, so no row ever
points at a missing or partial file; a document whose commit failed is simply overwritten by
the retry that stores it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


@dataclass(frozen=True, slots=True)
class StoredDocument:
    relative_path: str
    sha256: str
    size: int


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    @staticmethod
    def source_path(
        study_id: uuid.UUID, participant_id: uuid.UUID, session_id: uuid.UUID, task: str
    ) -> str:
        if not _SAFE_SEGMENT.match(task):
            raise ValueError(f"unsafe task name for a path: {task!r}")
        return f"sources/{study_id}/{participant_id}/{session_id}/{task}.json"

    def _absolute(self, relative_path: str) -> Path:
        path = (self.root / relative_path).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError("path escapes the storage directory")
        return path

    def _write(self, relative_path: str, data: bytes) -> StoredDocument:
        target = self._absolute(relative_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            with temporary.open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            temporary.replace(target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return StoredDocument(relative_path, hashlib.sha256(data).hexdigest(), len(data))

    async def write_atomic(self, relative_path: str, data: bytes) -> StoredDocument:
        return await asyncio.to_thread(self._write, relative_path, data)

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
