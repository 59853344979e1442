"""A study's webhooks and their delivery log (docs/webhooks.md); `configure_study` throughout."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, status

from app.api.dependencies import (
    ActorContextDep,
    CurrentUser,
    EncryptorDep,
    PageParamsDep,
    SessionDep,
    SettingsDep,
)
from app.api.openapi import error_responses
from app.core.clock import utcnow
from app.models.outbox import DeliveryStatus, EventType, OutboxDelivery, OutboxEvent
from app.models.webhook import WebhookSubscription
from app.schemas.common import IsoDateTime, Page
from app.schemas.outbox import DeliveryAttemptRead
from app.schemas.webhooks import (
    DeliveryDetailRead,
    DeliveryRead,
    EventBody,
    SecretRotation,
    WebhookCreate,
    WebhookEventType,
    WebhookRead,
    WebhookUpdate,
    WebhookWithSecret,
)
from app.services.webhooks import deliveries as delivery_service
from app.services.webhooks import subscriptions as service

router = APIRouter(prefix="/studies/{study_id:uuid}/webhooks", tags=["webhooks"])


def _webhook_read(subscription: WebhookSubscription) -> WebhookRead:
    expires = subscription.previous_secret_expires_at
    return WebhookRead(
        id=subscription.id,
        study_id=subscription.study_id,
        url=subscription.url,
        events=[WebhookEventType(value) for value in subscription.event_types],
        active=subscription.active,
        description=subscription.description,
        secret_created_at=subscription.secret_created_at,
        previous_secret_expires_at=expires if expires is not None and expires > utcnow() else None,
        created_at=subscription.created_at,
        updated_at=subscription.updated_at,
    )


def _with_secret(subscription: WebhookSubscription, secret: str) -> WebhookWithSecret:
    return WebhookWithSecret(**_webhook_read(subscription).model_dump(), secret=secret)


def _delivery_read(delivery: OutboxDelivery, event: OutboxEvent) -> DeliveryRead:
    assert delivery.subscription_id is not None
    return DeliveryRead(
        id=delivery.id,
        webhook_id=delivery.subscription_id,
        event_id=event.id,
        event_type=event.type,
        event_version=event.version,
        status=delivery.status,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at,
        last_attempt_at=delivery.last_attempt_at,
        last_status_code=delivery.last_status_code,
        last_duration_ms=delivery.last_duration_ms,
        last_error=delivery.last_error,
        delivered_at=delivery.delivered_at,
        created_at=delivery.created_at,
    )


def _delivery_detail(detail: delivery_service.DeliveryDetail) -> DeliveryDetailRead:
    event = detail.event
    return DeliveryDetailRead(
        **_delivery_read(detail.delivery, event).model_dump(),
        event=EventBody(
            id=event.id,
            event=event.type,
            version=event.version,
            timestamp=event.occurred_at,
            study_id=event.study_id,
            data=event.payload,
        ),
        attempt_log=[DeliveryAttemptRead.model_validate(attempt) for attempt in detail.attempts],
    )


@router.get("")
async def list_webhooks(
    study_id: uuid.UUID, principal: CurrentUser, session: SessionDep, page: PageParamsDep
) -> Page[WebhookRead]:
    """The study's webhooks (sort: `created_at`, `url`)."""
    rows, pagination = await service.list_webhooks(session, principal, study_id, page)
    return Page[WebhookRead](data=[_webhook_read(row) for row in rows], pagination=pagination)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_webhook(
    study_id: uuid.UUID,
    body: WebhookCreate,
    principal: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    encryptor: EncryptorDep,
    context: ActorContextDep,
) -> WebhookWithSecret:
    """Subscribe a URL to event types. The answer holds the signing secret, shown this once.
    A URL whose host resolves to a non-public address is 422 (`details.reason`
    `URL_NOT_ALLOWED`)."""
    subscription, secret = await service.create_webhook(
        session,
        settings,
        encryptor,
        context,
        principal,
        study_id,
        url=body.url,
        event_types=[event.as_event_type() for event in body.events],
        active=body.active,
        description=body.description,
    )
    return _with_secret(subscription, secret)


@router.get("/{webhook_id:uuid}")
async def get_webhook(
    study_id: uuid.UUID, webhook_id: uuid.UUID, principal: CurrentUser, session: SessionDep
) -> WebhookRead:
    return _webhook_read(await service.get_webhook(session, principal, study_id, webhook_id))


@router.patch("/{webhook_id:uuid}")
async def update_webhook(
    study_id: uuid.UUID,
    webhook_id: uuid.UUID,
    body: WebhookUpdate,
    principal: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    context: ActorContextDep,
) -> WebhookRead:
    """Change the URL, the event types, the description, or pause it (`active: false`)."""
    changes = service.WebhookChanges(
        url=body.url,
        event_types=[event.as_event_type() for event in body.events] if body.events else None,
        active=body.active,
        description=body.description,
        provided=set(body.model_fields_set),
    )
    subscription = await service.update_webhook(
        session, settings, context, principal, study_id, webhook_id, changes
    )
    return _webhook_read(subscription)


@router.delete("/{webhook_id:uuid}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook(
    study_id: uuid.UUID,
    webhook_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
) -> None:
    """Delete the webhook, its undelivered events and its delivery log."""
    await service.delete_webhook(session, context, principal, study_id, webhook_id)


@router.post("/{webhook_id:uuid}/rotate-secret")
async def rotate_secret(
    study_id: uuid.UUID,
    webhook_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    encryptor: EncryptorDep,
    context: ActorContextDep,
    body: SecretRotation | None = None,
) -> WebhookWithSecret:
    """A new secret, shown this once; the old one keeps signing beside it for
    `overlap_seconds` (default one day)."""
    rotation = body or SecretRotation()
    subscription, secret = await service.rotate_secret(
        session,
        encryptor,
        context,
        principal,
        study_id,
        webhook_id,
        overlap=timedelta(seconds=rotation.overlap_seconds),
    )
    return _with_secret(subscription, secret)


@router.post(
    "/{webhook_id:uuid}/test",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(409),
)
async def send_test_event(
    study_id: uuid.UUID,
    webhook_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
) -> DeliveryRead:
    """Queue a `webhook.test` event for this webhook; its delivery log shows the answer. 409
    when the webhook is paused."""
    delivery = await service.send_test_event(session, context, principal, study_id, webhook_id)
    event = await session.get(OutboxEvent, delivery.event_id)
    assert event is not None
    return _delivery_read(delivery, event)


@router.get("/{webhook_id:uuid}/deliveries")
async def list_deliveries(
    study_id: uuid.UUID,
    webhook_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    page: PageParamsDep,
    delivery_status: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    event_type: EventType | None = None,
    event_id: uuid.UUID | None = None,
    from_: Annotated[IsoDateTime | None, Query(alias="from")] = None,
    to: IsoDateTime | None = None,
) -> Page[DeliveryRead]:
    """The delivery log, oldest first by default (sort: `created_at`, `last_attempt_at`,
    `status`); `from` and `to` bound when the event was queued."""
    rows, pagination = await delivery_service.list_deliveries(
        session,
        principal,
        study_id,
        webhook_id,
        page,
        delivery_service.DeliveryFilters(
            status=delivery_status,
            event_type=event_type,
            event_id=event_id,
            created_from=from_,
            created_to=to,
        ),
    )
    return Page[DeliveryRead](
        data=[_delivery_read(delivery, event) for delivery, event in rows], pagination=pagination
    )


@router.get("/{webhook_id:uuid}/deliveries/{delivery_id:uuid}")
async def get_delivery(
    study_id: uuid.UUID,
    webhook_id: uuid.UUID,
    delivery_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
) -> DeliveryDetailRead:
    """One delivery with the event's body and every attempt."""
    detail = await delivery_service.get_delivery(
        session, principal, study_id, webhook_id, delivery_id
    )
    return _delivery_detail(detail)


@router.post(
    "/{webhook_id:uuid}/deliveries/{delivery_id:uuid}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(409),
)
async def redeliver(
    study_id: uuid.UUID,
    webhook_id: uuid.UUID,
    delivery_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
) -> DeliveryDetailRead:
    """Send the event again now, with a fresh allowance of attempts; 409 while an attempt is in
    flight."""
    detail = await delivery_service.redeliver_delivery(
        session, context, principal, study_id, webhook_id, delivery_id
    )
    return _delivery_detail(detail)
