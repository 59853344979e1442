"""Source documents no database row points at: found, reported and removed by a sweep.

A submission's documents are removed when its transaction does not commit
(app.services.source_storage). Two cases can still leave one behind: the process dies between the
write and the commit, or the commit fails in a way that leaves its outcome unknown (the
connection was lost during COMMIT), when removing the file could make a committed row point at
nothing. `metricis storage sweep` finds them: a file under `sources/` that no task result names,
last modified longer ago than a grace period (longer than any transaction runs).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.logging import get_logger
from app.models.assessment import AssessmentSession, TaskResult
from app.services.source_storage import SourceStorage

logger = get_logger(__name__)
MINIMUM_GRACE_SECONDS = 3600.0


@dataclass(slots=True)
class SweepReport:
    checked: int = 0  # files older than the grace period
    orphans: list[str] = field(default_factory=list)  # relative paths no row names
    removed: bool = False


async def sweep_orphans(
    session: AsyncSession, storage: SourceStorage, *, grace_seconds: float, remove: bool
) -> SweepReport:
    """The source documents older than `grace_seconds` that no task result names; removed when
    `remove`. Works one participant at a time (one query each); the storage is listed in a
    thread, never on the event loop."""
    if grace_seconds < MINIMUM_GRACE_SECONDS:
        raise ValueError(
            "the grace period must be at least an hour: a younger file may belong "
            "to a transaction still running"
        )
    report = SweepReport(removed=remove)
    participants = storage.files_by_participant(time.time() - grace_seconds)
    while (found := await asyncio.to_thread(next, participants, None)) is not None:
        files = [stored.key for stored in found.files]
        report.checked += len(files)
        named = set(
            (
                await session.scalars(
                    select(TaskResult.source_path)
                    .join(AssessmentSession, AssessmentSession.id == TaskResult.session_id)
                    .where(AssessmentSession.participant_id == found.participant_id)
                )
            ).all()
        )
        orphans = [path for path in files if path not in named]
        if orphans and remove:
            await asyncio.to_thread(storage.remove_files, orphans)
        report.orphans.extend(orphans)
    if report.orphans:
        logger.warning(
            "source_documents_orphaned", files=len(report.orphans), removed=report.removed
        )
    return report
