"""The REDCap push log of a study (its project and the sites' projects), and `sync`: send the
failed and dead pushes again."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import events as after_commit
from app.core.clock import utcnow
from app.models.outbox import (
    DeliveryStatus,
    OutboxDelivery,
    OutboxDeliveryAttempt,
    OutboxEvent,
)
from app.models.redcap import RedcapProject
from app.schemas.common import PageParams, Pagination
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.outbox.log import page_of_deliveries
from app.services.outbox.writer import OUTBOX_WRITTEN
from app.services.policy import Capability, require_study_capability
from app.services.principals import StaffPrincipal


@dataclass(frozen=True, slots=True)
class PushEntry:
    delivery: OutboxDelivery
    event: OutboxEvent
    attempts: Sequence[OutboxDeliveryAttempt]


async def list_pushes(
    session: AsyncSession,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    params: PageParams,
    status: DeliveryStatus | None,
) -> tuple[list[PushEntry], Pagination]:
    await require_study_capability(session, principal, study_id, Capability.CONFIGURE_STUDY)
    statement = (
        select(OutboxDelivery, OutboxEvent)
        .join(OutboxEvent, OutboxEvent.id == OutboxDelivery.event_id)
        .join(RedcapProject, RedcapProject.id == OutboxDelivery.redcap_project_id)
        .where(RedcapProject.study_id == study_id)
    )
    if status is not None:
        statement = statement.where(OutboxDelivery.status == status)
    rows, pagination = await page_of_deliveries(session, statement, params)
    ids = [delivery.id for delivery, _ in rows]
    attempts: dict[uuid.UUID, list[OutboxDeliveryAttempt]] = {}
    if ids:
        for attempt in await session.scalars(
            select(OutboxDeliveryAttempt)
            .where(OutboxDeliveryAttempt.delivery_id.in_(ids))
            .order_by(OutboxDeliveryAttempt.number)
        ):
            attempts.setdefault(attempt.delivery_id, []).append(attempt)
    return [
        PushEntry(delivery, event, attempts.get(delivery.id, [])) for delivery, event in rows
    ], pagination


async def sync_pending(
    session: AsyncSession, context: AuditContext, principal: StaffPrincipal, study_id: uuid.UUID
) -> int:
    """Queue the study's failed and dead pushes to be sent now, with a fresh allowance of
    attempts (pending ones are on their way already); how many. Audited when any were."""
    await require_study_capability(session, principal, study_id, Capability.CONFIGURE_STUDY)
    rows = (
        await session.scalars(
            select(OutboxDelivery)
            .join(RedcapProject, RedcapProject.id == OutboxDelivery.redcap_project_id)
            .where(
                RedcapProject.study_id == study_id,
                OutboxDelivery.status.in_([DeliveryStatus.FAILED, DeliveryStatus.DEAD]),
            )
            .with_for_update(of=OutboxDelivery)
        )
    ).all()
    now = utcnow()
    for delivery in rows:
        delivery.status = DeliveryStatus.PENDING
        delivery.round_attempts = 0
        delivery.next_attempt_at = now
    await session.flush()
    # A sync that found nothing still asks a worker to look now.
    after_commit.emit(session, OUTBOX_WRITTEN, {})
    if rows:
        await record_about(
            session,
            context,
            AuditSubject.configuration("study", study_id, study_id),
            "redcap.sync",
            after={"queued": len(rows)},
        )
    return len(rows)
