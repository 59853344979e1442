"""A study's webhook subscriptions: create, read, update, delete, rotate the secret, send a test.

Every route needs the `configure_study` capability (docs/roles.md): a webhook sends the study's
events to an address outside the server. Every write records an audit event of category
`config`, with the URL stripped of credentials and query values and never the secret.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core import events as after_commit
from app.core.clock import utcnow
from app.core.errors import ConflictError, NotFoundError, ValidationFailedError
from app.core.security import FieldEncryptor
from app.models.outbox import DeliveryStatus, EventType, OutboxDelivery
from app.models.webhook import WebhookSubscription
from app.schemas.common import PageParams, Pagination
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.outbox import events
from app.services.outbox.writer import OUTBOX_WRITTEN, NewEvent, emit_to_subscription
from app.services.pagination import paginate
from app.services.policy import Capability, require_study_capability
from app.services.principals import StaffPrincipal
from app.services.webhooks.signing import generate_secret
from app.services.webhooks.targets import TargetRefusedError, redacted_url, resolve_target


def webhook_snapshot(subscription: WebhookSubscription) -> dict[str, Any]:
    """What the audit trail records: no secret, no credentials or query values of the URL."""
    return {
        "url": redacted_url(subscription.url),
        "events": sorted(subscription.event_types),
        "active": subscription.active,
        "description": subscription.description,
    }


def _subject(subscription: WebhookSubscription) -> AuditSubject:
    return AuditSubject.configuration("webhook", subscription.id, subscription.study_id)


def _event_list(types: Sequence[EventType]) -> list[str]:
    return sorted({event_type.value for event_type in types})


async def _checked_url(settings: Settings, url: str) -> str:
    url = url.strip()
    try:
        await resolve_target(url, settings)
    except TargetRefusedError as exc:
        raise ValidationFailedError(
            str(exc),
            details={
                "reason": "URL_NOT_ALLOWED",
                "errors": [{"field": "url", "message": str(exc)}],
            },
        ) from exc
    return url


async def get_webhook(
    session: AsyncSession, principal: StaffPrincipal, study_id: uuid.UUID, webhook_id: uuid.UUID
) -> WebhookSubscription:
    await require_study_capability(session, principal, study_id, Capability.CONFIGURE_STUDY)
    subscription = await session.get(WebhookSubscription, webhook_id)
    if subscription is None or subscription.study_id != study_id:
        raise NotFoundError("Webhook not found")
    return subscription


async def list_webhooks(
    session: AsyncSession, principal: StaffPrincipal, study_id: uuid.UUID, params: PageParams
) -> tuple[Sequence[WebhookSubscription], Pagination]:
    await require_study_capability(session, principal, study_id, Capability.CONFIGURE_STUDY)
    return await paginate(
        session,
        select(WebhookSubscription).where(WebhookSubscription.study_id == study_id),
        params,
        sortable={"created_at": WebhookSubscription.created_at, "url": WebhookSubscription.url},
        default_sort="created_at",
        tie_breaker=WebhookSubscription.id,
    )


async def create_webhook(
    session: AsyncSession,
    settings: Settings,
    encryptor: FieldEncryptor,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    *,
    url: str,
    event_types: Sequence[EventType],
    active: bool,
    description: str | None,
) -> tuple[WebhookSubscription, str]:
    """The new webhook and its secret, which is shown this once."""
    await require_study_capability(session, principal, study_id, Capability.CONFIGURE_STUDY)
    checked = await _checked_url(settings, url)
    secret = generate_secret()
    subscription = WebhookSubscription(
        id=uuid.uuid4(),
        study_id=study_id,
        url=checked,
        description=description.strip() if description else None,
        event_types=_event_list(event_types),
        active=active,
        secret_encrypted=encryptor.encrypt(secret),
        secret_created_at=utcnow(),
    )
    session.add(subscription)
    await record_about(
        session,
        context,
        _subject(subscription),
        "webhook.create",
        after=webhook_snapshot(subscription),
    )
    return subscription, secret


@dataclass(slots=True)
class WebhookChanges:
    url: str | None = None
    event_types: Sequence[EventType] | None = None
    active: bool | None = None
    description: str | None = None
    provided: set[str] = field(default_factory=set)


async def update_webhook(
    session: AsyncSession,
    settings: Settings,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    webhook_id: uuid.UUID,
    changes: WebhookChanges,
) -> WebhookSubscription:
    subscription = await get_webhook(session, principal, study_id, webhook_id)
    before = webhook_snapshot(subscription)
    before_url = subscription.url
    was_active = subscription.active
    if changes.url is not None and changes.url.strip() != subscription.url:
        subscription.url = await _checked_url(settings, changes.url)
    if changes.event_types is not None:
        subscription.event_types = _event_list(changes.event_types)
    if changes.active is not None:
        subscription.active = changes.active
    if "description" in changes.provided:
        subscription.description = changes.description.strip() if changes.description else None
    after = webhook_snapshot(subscription)
    # The snapshot hides credentials and query values, so a change there shows only as a flag.
    url_changed = subscription.url != before_url
    if after != before or url_changed:
        await record_about(
            session,
            context,
            _subject(subscription),
            "webhook.update",
            before=before,
            after={**after, "url_changed": url_changed},
        )
    if subscription.active and not was_active:
        # Deliveries held while it was paused are due again.
        after_commit.emit(session, OUTBOX_WRITTEN, {})
    return subscription


async def delete_webhook(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    webhook_id: uuid.UUID,
) -> None:
    """Delete the webhook with its deliveries and their log; undelivered events are dropped."""
    subscription = await get_webhook(session, principal, study_id, webhook_id)
    undelivered = await session.scalar(
        select(func.count())
        .select_from(OutboxDelivery)
        .where(
            OutboxDelivery.subscription_id == subscription.id,
            OutboxDelivery.status.not_in([DeliveryStatus.DELIVERED, DeliveryStatus.DEAD]),
        )
    )
    await record_about(
        session,
        context,
        _subject(subscription),
        "webhook.delete",
        before=webhook_snapshot(subscription),
        after={"undelivered_dropped": int(undelivered or 0)},
    )
    await session.delete(subscription)
    await session.flush()


async def rotate_secret(
    session: AsyncSession,
    encryptor: FieldEncryptor,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    webhook_id: uuid.UUID,
    *,
    overlap: timedelta,
) -> tuple[WebhookSubscription, str]:
    """A new secret, shown this once. For `overlap` the old one signs beside it (both `v1`
    values in the header), so receivers switch without refusing a delivery; zero ends it now.
    A secret still overlapping from an earlier rotation stops at once."""
    subscription = await get_webhook(session, principal, study_id, webhook_id)
    now = utcnow()
    secret = generate_secret()
    if overlap > timedelta(0):
        subscription.previous_secret_encrypted = subscription.secret_encrypted
        subscription.previous_secret_expires_at = now + overlap
    else:
        subscription.previous_secret_encrypted = None
        subscription.previous_secret_expires_at = None
    subscription.secret_encrypted = encryptor.encrypt(secret)
    subscription.secret_created_at = now
    await record_about(
        session,
        context,
        _subject(subscription),
        "webhook.secret_rotated",
        after={
            "secret_created_at": now.isoformat(),
            "overlap_seconds": int(overlap.total_seconds()),
            "previous_secret_expires_at": subscription.previous_secret_expires_at.isoformat()
            if subscription.previous_secret_expires_at
            else None,
        },
    )
    return subscription, secret


async def send_test_event(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    webhook_id: uuid.UUID,
) -> OutboxDelivery:
    """Queue a `webhook.test` event for this webhook alone, delivered and logged like any other
    event; the delivery answered is `pending` and its log shows what the receiver answered."""
    subscription = await get_webhook(session, principal, study_id, webhook_id)
    if not subscription.active:
        raise ConflictError(
            "The webhook is paused (active: false); activate it to send a test event",
            details={"reason": "WEBHOOK_INACTIVE"},
        )
    event_id = await emit_to_subscription(
        session,
        NewEvent(EventType.WEBHOOK_TEST, study_id, events.webhook_test(str(subscription.id))),
        subscription.id,
    )
    delivery = await session.scalar(
        select(OutboxDelivery).where(
            OutboxDelivery.event_id == event_id, OutboxDelivery.subscription_id == subscription.id
        )
    )
    assert delivery is not None
    await record_about(
        session,
        context,
        _subject(subscription),
        "webhook.test_sent",
        after={"event_id": str(event_id), "delivery_id": str(delivery.id)},
    )
    return delivery
