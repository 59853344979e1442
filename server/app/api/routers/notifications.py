"""Notifications: a participant's, a study's delivery log and statistics, the audited resend,
channel preferences and the signed unsubscribe link (docs/notifications.md)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from app.api.dependencies import (
    ActorContextDep,
    AnyActorContextDep,
    AnyPrincipal,
    CurrentUser,
    PageParamsDep,
    ParticipantQuery,
    RequestAuditContextDep,
    SessionDep,
    SettingsDep,
    SiteQuery,
)
from app.api.openapi import error_responses
from app.models.notification import NotificationChannel, NotificationKind, NotificationStatus
from app.schemas.common import IsoDateTime, Page
from app.schemas.notifications import (
    ChannelCounts,
    DeliveryStatsRead,
    NotificationPreferencesRead,
    NotificationPreferencesUpdate,
    NotificationRead,
    OptOutRead,
    ResendRequest,
    StatusCounts,
    UnsubscribeResult,
)
from app.services.notifications import delivery_log, preferences
from app.services.notifications.delivery_log import NotificationFilters, NotificationRow

router = APIRouter(tags=["notifications"])

FromQuery = Annotated[
    IsoDateTime | None, Query(alias="from", description="send_at at or after this time")
]
ToQuery = Annotated[IsoDateTime | None, Query(description="send_at before this time")]


def _read(row: NotificationRow) -> NotificationRead:
    notification, participant_code, site_id = row
    return NotificationRead(
        id=notification.id,
        study_id=notification.study_id,
        participant_id=notification.participant_id,
        participant_code=participant_code,
        site_id=site_id,
        visit_id=notification.visit_id,
        kind=notification.kind,
        channel=notification.channel,
        status=notification.status,
        send_at=notification.send_at,
        due_at=notification.due_at,
        language=notification.language,
        subject=notification.subject,
        body=notification.body,
        destination=notification.destination_hint,
        attempts=notification.attempts,
        provider_message_id=notification.provider_message_id,
        error=notification.error,
        claimed_at=notification.claimed_at,
        sent_at=notification.sent_at,
        cancelled_at=notification.cancelled_at,
        cancel_reason=notification.cancel_reason,
        resend_of=notification.resend_of,
        created_at=notification.created_at,
        updated_at=notification.updated_at,
    )


def _page(rows: list[NotificationRow], pagination: object) -> Page[NotificationRead]:
    return Page[NotificationRead].model_validate(
        {"data": [_read(row) for row in rows], "pagination": pagination}
    )


def _preferences(found: preferences.Preferences) -> NotificationPreferencesRead:
    return NotificationPreferencesRead(
        participant_id=found.participant_id,
        email_subscribed=found.subscribed(NotificationChannel.EMAIL),
        sms_subscribed=found.subscribed(NotificationChannel.SMS),
        opt_outs=[
            OptOutRead(channel=o.channel, source=o.source, created_at=o.created_at)
            for o in found.opt_outs
        ],
    )


@router.get("/participants/{participant_id:uuid}/notifications")
async def list_participant_notifications(
    participant_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    page: PageParamsDep,
    status: NotificationStatus | None = None,
    channel: NotificationChannel | None = None,
    kind: NotificationKind | None = None,
    from_: FromQuery = None,
    to: ToQuery = None,
) -> Page[NotificationRead]:
    """A participant's notifications, by `send_at` (also `created_at`, `sent_at`, `status`)."""
    filters = NotificationFilters(
        status=status, channel=channel, kind=kind, send_from=from_, send_to=to
    )
    rows, pagination = await delivery_log.list_participant_notifications(
        session, principal, participant_id, page, filters
    )
    return _page(rows, pagination)


@router.get("/studies/{study_id:uuid}/notifications")
async def list_study_notifications(
    study_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    page: PageParamsDep,
    status: NotificationStatus | None = None,
    channel: NotificationChannel | None = None,
    kind: NotificationKind | None = None,
    site_id: SiteQuery = None,
    participant_id: ParticipantQuery = None,
    visit_id: uuid.UUID | None = None,
    from_: FromQuery = None,
    to: ToQuery = None,
) -> Page[NotificationRead]:
    """The study's delivery log, within the caller's site for a site-scoped member."""
    filters = NotificationFilters(
        status=status, channel=channel, kind=kind, visit_id=visit_id, send_from=from_, send_to=to
    )
    rows, pagination = await delivery_log.list_study_notifications(
        session, principal, study_id, page, filters, site=site_id, participant=participant_id
    )
    return _page(rows, pagination)


@router.get("/studies/{study_id:uuid}/notifications/stats")
async def study_delivery_stats(
    study_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    from_: FromQuery = None,
    to: ToQuery = None,
) -> DeliveryStatsRead:
    """Counts by status and channel, within the caller's site for a site-scoped member."""
    stats = await delivery_log.study_delivery_stats(
        session, principal, study_id, send_from=from_, send_to=to
    )

    def counts(by_status: dict[NotificationStatus, int]) -> StatusCounts:
        return StatusCounts.model_validate({key.value: value for key, value in by_status.items()})

    return DeliveryStatsRead(
        study_id=stats.study_id,
        total=stats.total,
        by_status=counts(stats.by_status),
        by_channel=ChannelCounts(
            email=counts(stats.by_channel[NotificationChannel.EMAIL]),
            sms=counts(stats.by_channel[NotificationChannel.SMS]),
        ),
        delivery_rate=stats.delivery_rate,
        interrupted=stats.interrupted,
        retried=stats.retried,
    )


@router.post(
    "/notifications/{notification_id:uuid}/resend",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409),
)
async def resend_notification(
    notification_id: uuid.UUID,
    body: ResendRequest,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
) -> NotificationRead:
    """Send a sent or failed notification again: a new notification, due now, audited with the
    reason. 409 while it (or an earlier resend) is pending, for a cancelled one, and for a
    participant who withdrew or unsubscribed from the channel."""
    row = await delivery_log.resend_notification(
        session, context, principal, notification_id, reason=body.reason
    )
    return _read(row)


@router.get("/participants/{participant_id:uuid}/notification-preferences")
async def get_notification_preferences(
    participant_id: uuid.UUID, principal: AnyPrincipal, session: SessionDep
) -> NotificationPreferencesRead:
    """The channels the participant receives notifications on; a participant token reads its
    own."""
    found = await preferences.get_preferences(session, principal, participant_id)
    return _preferences(found)


@router.put("/participants/{participant_id:uuid}/notification-preferences")
async def update_notification_preferences(
    participant_id: uuid.UUID,
    body: NotificationPreferencesUpdate,
    principal: AnyPrincipal,
    session: SessionDep,
    context: AnyActorContextDep,
) -> NotificationPreferencesRead:
    """Opt out of a channel (`false`, which cancels its scheduled notifications) or back in
    (`true`); a field left out is unchanged. Staff need the right to edit participants; a
    participant token changes its own."""
    wanted = {
        channel: value
        for channel, value in (
            (NotificationChannel.EMAIL, body.email_subscribed),
            (NotificationChannel.SMS, body.sms_subscribed),
        )
        if value is not None
    }
    found = await preferences.update_preferences(
        session, context, principal, participant_id, subscribed=wanted, reason=body.reason
    )
    return _preferences(found)


@router.post("/notifications/unsubscribe")
async def unsubscribe(
    token: Annotated[
        str, Query(min_length=1, max_length=200, description="The token of the email's link")
    ],
    session: SessionDep,
    settings: SettingsDep,
    context: RequestAuditContextDep,
) -> UnsubscribeResult:
    """Follow an email's unsubscribe link: no sign-in, the signed token is the credential. Also
    the target of the one-click `List-Unsubscribe-Post` header (RFC 8058), whose form body is
    ignored. Idempotent; 422 for a token that is not valid."""
    _, channel = await preferences.unsubscribe_with_token(session, settings, context, token)
    return UnsubscribeResult(channel=channel)
