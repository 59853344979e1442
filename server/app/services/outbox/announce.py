"""One call per change that leaves the server, for the services that make the change.

Each writes its event through `writer.emit` in the caller's transaction, so a service adds a
single line where the change is complete (after its audit event).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.assessment import AssessmentSession, TaskResult
from app.models.consent import ConsentRecord
from app.models.outbox import EventType
from app.models.participant import Participant, ParticipantStatus
from app.models.schedule import Visit
from app.services.outbox import events
from app.services.outbox.writer import NewEvent, emit, emit_many


async def _participant(session: AsyncSession, participant_id: uuid.UUID) -> Participant:
    # Already in the session's identity map on every path that gets here: no query.
    participant = await session.get(Participant, participant_id)
    assert participant is not None
    return participant


async def announce_participant_enrolled(session: AsyncSession, participant: Participant) -> None:
    await emit(
        session,
        EventType.PARTICIPANT_ENROLLED,
        participant.study_id,
        events.participant_enrolled(participant),
        participant_id=participant.id,
    )


async def announce_participants_imported(
    session: AsyncSession, study_id: uuid.UUID, rows: Sequence[Mapping[str, Any]]
) -> None:
    """The enrolled ones among participants inserted in bulk (rows of `participants` columns)."""
    await emit_many(
        session,
        [
            NewEvent(
                EventType.PARTICIPANT_ENROLLED,
                study_id,
                events.enrollment_payload(
                    participant_id=str(row["id"]),
                    participant_code=row["participant_code"],
                    site_id=str(row["site_id"]) if row["site_id"] else None,
                    enrollment_date=row["enrollment_date"],
                    actor=str(row["actor"]),
                    language=row["language"],
                ),
                participant_id=row["id"],
            )
            for row in rows
            if row["status"] == ParticipantStatus.ENROLLED
        ],
    )


async def announce_participant_withdrawn(session: AsyncSession, participant: Participant) -> None:
    await emit(
        session,
        EventType.PARTICIPANT_WITHDRAWN,
        participant.study_id,
        events.participant_withdrawn(participant),
        participant_id=participant.id,
    )


async def announce_consent_signed(
    session: AsyncSession, record: ConsentRecord, participant: Participant
) -> None:
    await emit(
        session,
        EventType.CONSENT_SIGNED,
        participant.study_id,
        events.consent_signed(record, participant),
        participant_id=participant.id,
    )


async def announce_tasks_accepted(
    session: AsyncSession, record: AssessmentSession, results: Sequence[TaskResult]
) -> None:
    """One `task.accepted` per newly stored task of a submission."""
    participant = await _participant(session, record.participant_id)
    await emit_many(
        session,
        [
            NewEvent(
                EventType.TASK_ACCEPTED,
                record.study_id,
                events.task_accepted(record, participant, result),
                participant_id=participant.id,
            )
            for result in results
        ],
    )


async def announce_session_completed(session: AsyncSession, record: AssessmentSession) -> None:
    participant = await _participant(session, record.participant_id)
    results = (
        await session.scalars(
            select(TaskResult)
            .where(TaskResult.session_id == record.id)
            .order_by(TaskResult.accepted_at, TaskResult.task)
        )
    ).all()
    await emit(
        session,
        EventType.SESSION_COMPLETED,
        record.study_id,
        events.session_completed(record, participant, results),
        participant_id=participant.id,
    )


# Visits are looked up in slices, well within every database's limit on bound parameters.
VISIT_SLICE = 500


async def announce_visits_missed(session: AsyncSession, visit_ids: Sequence[uuid.UUID]) -> None:
    """One `visit.missed` per visit whose window closed without a session (the status scan)."""
    for start in range(0, len(visit_ids), VISIT_SLICE):
        rows = await session.execute(
            select(Visit, Participant.participant_code, Participant.site_id)
            .join(Participant, Participant.id == Visit.participant_id)
            .where(Visit.id.in_(visit_ids[start : start + VISIT_SLICE]))
            .order_by(Visit.window_closes_at, Visit.id)
        )
        await emit_many(
            session,
            [
                NewEvent(
                    EventType.VISIT_MISSED,
                    visit.study_id,
                    events.visit_missed(visit, code, site_id),
                    participant_id=visit.participant_id,
                )
                for visit, code, site_id in rows
            ],
        )
