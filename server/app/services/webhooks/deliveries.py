"""A webhook's delivery log: each event sent to it, its status and every attempt; redelivery."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFoundError
from app.models.outbox import (
    DeliveryStatus,
    EventType,
    OutboxDelivery,
    OutboxDeliveryAttempt,
    OutboxEvent,
)
from app.schemas.common import PageParams, Pagination
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.outbox.dispatch import redeliver
from app.services.outbox.log import page_of_deliveries
from app.services.principals import StaffPrincipal
from app.services.webhooks.subscriptions import get_webhook


@dataclass(frozen=True, slots=True)
class DeliveryFilters:
    status: DeliveryStatus | None = None
    event_type: EventType | None = None
    event_id: uuid.UUID | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeliveryDetail:
    delivery: OutboxDelivery
    event: OutboxEvent
    attempts: Sequence[OutboxDeliveryAttempt]


async def list_deliveries(
    session: AsyncSession,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    webhook_id: uuid.UUID,
    params: PageParams,
    filters: DeliveryFilters,
) -> tuple[Sequence[tuple[OutboxDelivery, OutboxEvent]], Pagination]:
    subscription = await get_webhook(session, principal, study_id, webhook_id)
    statement = (
        select(OutboxDelivery, OutboxEvent)
        .join(OutboxEvent, OutboxEvent.id == OutboxDelivery.event_id)
        .where(OutboxDelivery.subscription_id == subscription.id)
    )
    if filters.status is not None:
        statement = statement.where(OutboxDelivery.status == filters.status)
    if filters.event_type is not None:
        statement = statement.where(OutboxEvent.type == filters.event_type)
    if filters.event_id is not None:
        statement = statement.where(OutboxDelivery.event_id == filters.event_id)
    if filters.created_from is not None:
        statement = statement.where(OutboxDelivery.created_at >= filters.created_from)
    if filters.created_to is not None:
        statement = statement.where(OutboxDelivery.created_at <= filters.created_to)
    rows, pagination = await page_of_deliveries(session, statement, params)
    return [(delivery, event) for delivery, event in rows], pagination


async def _delivery_of(
    session: AsyncSession, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> tuple[OutboxDelivery, OutboxEvent]:
    delivery = await session.get(OutboxDelivery, delivery_id)
    if delivery is None or delivery.subscription_id != webhook_id:
        raise NotFoundError("Delivery not found")
    event = await session.get(OutboxEvent, delivery.event_id)
    assert event is not None
    return delivery, event


async def _attempts(
    session: AsyncSession, delivery_id: uuid.UUID
) -> Sequence[OutboxDeliveryAttempt]:
    return (
        await session.scalars(
            select(OutboxDeliveryAttempt)
            .where(OutboxDeliveryAttempt.delivery_id == delivery_id)
            .order_by(OutboxDeliveryAttempt.number)
        )
    ).all()


async def get_delivery(
    session: AsyncSession,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    webhook_id: uuid.UUID,
    delivery_id: uuid.UUID,
) -> DeliveryDetail:
    await get_webhook(session, principal, study_id, webhook_id)
    delivery, event = await _delivery_of(session, webhook_id, delivery_id)
    return DeliveryDetail(delivery, event, await _attempts(session, delivery.id))


async def redeliver_delivery(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    webhook_id: uuid.UUID,
    delivery_id: uuid.UUID,
) -> DeliveryDetail:
    """Send the event again now with a fresh allowance of attempts (409 while one is in
    flight). The receiver gets the same event id, so it can tell a redelivery from news."""
    await get_webhook(session, principal, study_id, webhook_id)
    delivery, event = await _delivery_of(session, webhook_id, delivery_id)
    before = {"status": delivery.status.value, "attempts": delivery.attempts}
    await redeliver(session, delivery)
    await record_about(
        session,
        context,
        AuditSubject.configuration("webhook_delivery", delivery.id, study_id),
        "webhook.delivery_redelivered",
        before=before,
        after={
            "status": delivery.status.value,
            "event_id": str(event.id),
            "event_type": event.type.value,
            "webhook_id": str(webhook_id),
        },
    )
    return DeliveryDetail(delivery, event, await _attempts(session, delivery.id))
