"""The one clock: timezone-aware UTC now, so every stored and compared time carries its offset."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
