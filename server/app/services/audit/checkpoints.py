"""Signed checkpoints of the chain's end, published where the database role cannot rewrite them.

A checkpoint names the chain, a position and the MAC of the link there, and is signed (HMAC-
SHA256) with the current chain key. Deleting events from the end of the chain and rewinding the
chain state, or rewriting the chain with a stolen key, leaves the chain disagreeing with a
checkpoint published earlier; `verify_chain` reads every checkpoint it can.

`CheckpointStore` is where they go: today a folder of JSON-lines files (`FileCheckpointStore`);
an object store with retention locks can take its place behind the same two methods.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from app.services.audit.keys import ChainKey, ChainKeyring

CHECKPOINT_DOMAIN = b"metricis-audit-checkpoint-v1"
CHECKPOINT_FILE_GLOB = "checkpoints-*.jsonl"


class CheckpointStoreError(Exception):
    """The store holds something that is not a checkpoint, or cannot be read."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    chain_id: uuid.UUID
    sequence: int
    mac: str
    time: datetime
    key_id: str
    signature: str

    @staticmethod
    def _signed_bytes(
        chain_id: uuid.UUID, sequence: int, mac: str, time: datetime, key_id: str
    ) -> bytes:
        content = {
            "chain_id": str(chain_id),
            "sequence": sequence,
            "mac": mac,
            "time": time.isoformat(timespec="microseconds"),
            "key_id": key_id,
        }
        return CHECKPOINT_DOMAIN + b"\n" + json.dumps(content, sort_keys=True).encode()

    @classmethod
    def sign(
        cls, key: ChainKey, chain_id: uuid.UUID, sequence: int, mac: str, time: datetime
    ) -> Checkpoint:
        signature = key.mac(cls._signed_bytes(chain_id, sequence, mac, time, key.key_id))
        return cls(chain_id, sequence, mac, time, key.key_id, signature)

    def signature_problem(self, keyring: ChainKeyring) -> str | None:
        key = keyring.get(self.key_id)
        if key is None:
            return f"is signed with key '{self.key_id}', which is not configured"
        expected = key.mac(
            self._signed_bytes(self.chain_id, self.sequence, self.mac, self.time, self.key_id)
        )
        if expected != self.signature:
            return "does not carry a valid signature"
        return None

    def as_json(self) -> dict[str, Any]:
        return {
            "chain_id": str(self.chain_id),
            "sequence": self.sequence,
            "mac": self.mac,
            "time": self.time.isoformat(timespec="microseconds"),
            "key_id": self.key_id,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, value: Any) -> Checkpoint:
        if not isinstance(value, dict):
            raise ValueError("not an object")
        time = datetime.fromisoformat(str(value["time"]))
        if time.tzinfo is None:
            raise ValueError("a checkpoint time carries its offset")
        sequence = value["sequence"]
        if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 1:
            raise ValueError("sequence is not a positive integer")
        return cls(
            chain_id=uuid.UUID(str(value["chain_id"])),
            sequence=sequence,
            mac=str(value["mac"]),
            time=time,
            key_id=str(value["key_id"]),
            signature=str(value["signature"]),
        )


class CheckpointStore(Protocol):
    """Append-only storage of checkpoints, shared by every chain that points at it."""

    async def append(self, checkpoint: Checkpoint) -> None: ...

    async def read(self, chain_id: uuid.UUID) -> list[Checkpoint]:
        """Every checkpoint of that chain, oldest first; raises CheckpointStoreError."""
        ...


class FileCheckpointStore:
    """One JSON line per checkpoint, in a file per month (`checkpoints-2026-12.jsonl`).

    Lines are appended (O_APPEND) and flushed to disk before the chain state records the
    checkpoint as published, so a crash can repeat a checkpoint but never lose one. Point the
    folder at storage the database's owner cannot write, or ship it off the machine.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path_for(self, checkpoint: Checkpoint) -> Path:
        return self.directory / f"checkpoints-{checkpoint.time:%Y-%m}.jsonl"

    def _append(self, checkpoint: Checkpoint) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        line = json.dumps(checkpoint.as_json(), sort_keys=True).encode() + b"\n"
        descriptor = os.open(
            self._path_for(checkpoint), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640
        )
        try:
            os.write(descriptor, line)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def _read(self, chain_id: uuid.UUID) -> list[Checkpoint]:
        if not self.directory.is_dir():
            return []
        found: list[Checkpoint] = []
        for path in sorted(self.directory.glob(CHECKPOINT_FILE_GLOB)):
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise CheckpointStoreError(f"{path.name} cannot be read: {exc}") from exc
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    checkpoint = Checkpoint.from_json(json.loads(line))
                except (ValueError, KeyError, TypeError) as exc:
                    raise CheckpointStoreError(
                        f"{path.name} line {number} is not a checkpoint ({exc})"
                    ) from exc
                if checkpoint.chain_id == chain_id:
                    found.append(checkpoint)
        return sorted(found, key=lambda checkpoint: (checkpoint.time, checkpoint.sequence))

    async def append(self, checkpoint: Checkpoint) -> None:
        await asyncio.to_thread(self._append, checkpoint)

    async def read(self, chain_id: uuid.UUID) -> list[Checkpoint]:
        return await asyncio.to_thread(self._read, chain_id)
