"""The heartbeats of periodic background jobs: beat records one per tick, health reads it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.worker import WorkerHeartbeat

BEAT_HEARTBEAT = "beat"


async def record_heartbeat(session: AsyncSession, name: str, beat_at: datetime) -> None:
    """Store `beat_at` unless a later time is already stored: one statement, so two workers
    running the same tick, or a late message delivered after a newer one, never go backwards."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(WorkerHeartbeat).values(name=name, beat_at=beat_at)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[WorkerHeartbeat.name],
            set_={"beat_at": statement.excluded.beat_at},
            where=WorkerHeartbeat.beat_at < statement.excluded.beat_at,
        )
    )


async def last_heartbeat(session: AsyncSession, name: str) -> datetime | None:
    return await session.scalar(select(WorkerHeartbeat.beat_at).where(WorkerHeartbeat.name == name))
