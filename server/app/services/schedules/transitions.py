"""The status scan: store scheduled → open → missed as windows open and close.

Run every minute by celery beat (`app.workers.tasks.advance_visit_statuses`). Two conditional
UPDATEs, each served by an index on (status, window instant), so a run costs what it changes;
running it twice, or two runs at once, changes each visit once (the second finds nothing left
to move, and on PostgreSQL waits for the first's row locks, then re-reads the condition).
Reads never depend on it having run: they compute the status from the window and the clock
(`visits.status_at`).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import AuditCategory
from app.models.schedule import Visit, VisitStatus
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.notifications.scheduling import CancelReason, cancel_pending_of_visits
from app.services.outbox.announce import announce_visits_missed


@dataclass(frozen=True, slots=True)
class AdvancedStatuses:
    opened: list[uuid.UUID] = field(default_factory=list)
    missed: list[uuid.UUID] = field(default_factory=list)


async def advance_visit_statuses(
    session: AsyncSession, context: AuditContext, now: datetime
) -> AdvancedStatuses:
    """Store the status of every visit whose window opened or closed by `now`, and record one
    audit event per study that had any (the visits listed)."""
    missed = (
        await session.execute(
            update(Visit)
            .where(
                Visit.status.in_((VisitStatus.SCHEDULED, VisitStatus.OPEN)),
                Visit.window_closes_at <= now,
            )
            .values(status=VisitStatus.MISSED, updated_at=now)
            .returning(Visit.id, Visit.study_id)
            .execution_options(synchronize_session=False)
        )
    ).all()
    opened = (
        await session.execute(
            update(Visit)
            .where(
                Visit.status == VisitStatus.SCHEDULED,
                Visit.window_opens_at <= now,
                Visit.window_closes_at > now,
            )
            .values(status=VisitStatus.OPEN, updated_at=now)
            .returning(Visit.id, Visit.study_id)
            .execution_options(synchronize_session=False)
        )
    ).all()
    await announce_visits_missed(session, [visit_id for visit_id, _ in missed])
    # A reminder still waiting (its worker was down, quiet hours pushed it) is about a window
    # that has closed.
    await cancel_pending_of_visits(
        session, [visit_id for visit_id, _ in missed], reason=CancelReason.VISIT_MISSED
    )
    by_study: dict[uuid.UUID, dict[str, list[str]]] = defaultdict(
        lambda: {"opened": [], "missed": []}
    )
    for visit_id, study_id in opened:
        by_study[study_id]["opened"].append(str(visit_id))
    for visit_id, study_id in missed:
        by_study[study_id]["missed"].append(str(visit_id))
    for study_id, changed in sorted(by_study.items()):
        await record_about(
            session,
            context,
            AuditSubject(AuditCategory.VISIT, "study", study_id, study_id),
            "visits.status_advanced",
            after={"as_of": now.isoformat(), **changed},
        )
    return AdvancedStatuses(
        opened=[visit_id for visit_id, _ in opened], missed=[visit_id for visit_id, _ in missed]
    )
