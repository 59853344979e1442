"""Where export files live, behind one small interface.

A job writes its file to a local scratch file first (computing size and SHA-256 on the way),
then hands it to the storage under a key; downloads read it back in chunks. The local directory
backend keeps files under STORAGE_DIR/exports; an object store backend implements the same four
methods (`put`, `iter_chunks`, `delete`, `exists`) so several API machines can share the files.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from app.config import Settings

EXPORTS = "exports"
CHUNK_BYTES = 256 * 1024
_SAFE_KEY = re.compile(r"^[A-Za-z0-9._-]{1,128}(/[A-Za-z0-9._-]{1,128}){0,4}$")


class FileStorage(Protocol):
    def put(self, key: str, source: Path) -> None:
        """Store the finished local file `source` under `key` (the source is consumed)."""

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        """The stored bytes, in chunks of at most CHUNK_BYTES."""

    def delete(self, key: str) -> None:
        """Remove the file; a missing one is not an error."""

    def exists(self, key: str) -> bool: ...


def check_key(key: str) -> str:
    if not _SAFE_KEY.match(key) or ".." in key.split("/"):
        raise ValueError(f"unsafe storage key: {key!r}")
    return key


class LocalDirectoryStorage:
    """Files in a directory on this machine (the default)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, source: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with source.open("rb") as handle:
            os.fsync(handle.fileno())
        # A rename within one file system is atomic: a reader sees the whole file or none.
        shutil.move(str(source), str(target))
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        with self._path(key).open("rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                yield chunk

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()


def scratch_dir(settings: Settings) -> Path:
    """Local room for files being written, on the same file system as the local backend."""
    path = settings.STORAGE_DIR / EXPORTS / ".partial"
    path.mkdir(parents=True, exist_ok=True)
    return path


def export_storage(settings: Settings) -> FileStorage:
    return LocalDirectoryStorage(settings.STORAGE_DIR / EXPORTS)
