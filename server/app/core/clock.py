"""The one clock: timezone-aware UTC now, so every stored and compared time carries its offset."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def clock_offset_seconds(client_time: datetime | None, received_at: datetime) -> float | None:
    """Device clock minus server clock when the request arrived, in seconds (positive: the
    device runs ahead); None when the device sent no time."""
    if client_time is None:
        return None
    return round((client_time - received_at).total_seconds(), 3)
