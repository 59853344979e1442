"""Reading notifications (a participant's, a study's delivery log and its statistics) and the
one thing a person does to them: resend.

Reads follow the participant rules of docs/roles.md: a study the caller cannot see is 404, a
site-scoped member sees the notifications of their site's participants only. Responses carry the
masked destination stored at send time, never an address in clear.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.errors import ConflictError, NotFoundError, not_found_as
from app.models.audit import AuditCategory
from app.models.notification import (
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationStatus,
)
from app.models.participant import Participant, ParticipantStatus
from app.schemas.common import PageParams, Pagination
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.notifications.dispatcher import INTERRUPTED
from app.services.notifications.scheduling import is_opted_out, schedule_notification
from app.services.pagination import paginate_rows
from app.services.participants import get_participant, participant_filter
from app.services.policy import Capability, require_study_capability
from app.services.principals import StaffPrincipal
from app.services.references import resolve_site

# A notification with the code and site of its participant.
NotificationRow = tuple[Notification, str, uuid.UUID | None]

SORTABLE = {
    "send_at": Notification.send_at,
    "created_at": Notification.created_at,
    "sent_at": Notification.sent_at,
    "status": Notification.status,
}


def notification_snapshot(notification: Notification) -> dict[str, Any]:
    """What audit events record: no text, no address."""
    return {
        "kind": notification.kind,
        "channel": notification.channel,
        "status": notification.status,
        "send_at": notification.send_at.isoformat(),
        "visit_id": str(notification.visit_id) if notification.visit_id else None,
        "attempts": notification.attempts,
        "resend_of": str(notification.resend_of) if notification.resend_of else None,
    }


def _with_participant() -> Select[Notification, str, uuid.UUID | None]:
    return select(Notification, Participant.participant_code, Participant.site_id).join(
        Participant, Participant.id == Notification.participant_id
    )


@dataclass(frozen=True, slots=True)
class NotificationFilters:
    status: NotificationStatus | None = None
    channel: NotificationChannel | None = None
    kind: NotificationKind | None = None
    visit_id: uuid.UUID | None = None
    send_from: datetime | None = None
    send_to: datetime | None = None

    def apply(
        self, statement: Select[Notification, str, uuid.UUID | None]
    ) -> Select[Notification, str, uuid.UUID | None]:
        if self.status is not None:
            statement = statement.where(Notification.status == self.status)
        if self.channel is not None:
            statement = statement.where(Notification.channel == self.channel)
        if self.kind is not None:
            statement = statement.where(Notification.kind == self.kind)
        if self.visit_id is not None:
            statement = statement.where(Notification.visit_id == self.visit_id)
        if self.send_from is not None:
            statement = statement.where(Notification.send_at >= self.send_from)
        if self.send_to is not None:
            statement = statement.where(Notification.send_at < self.send_to)
        return statement


async def _page(
    session: AsyncSession,
    statement: Select[Notification, str, uuid.UUID | None],
    params: PageParams,
) -> tuple[list[NotificationRow], Pagination]:
    rows, pagination = await paginate_rows(
        session,
        statement,
        params,
        sortable=SORTABLE,
        default_sort="send_at",
        tie_breaker=Notification.id,
    )
    return [(row[0], row[1], row[2]) for row in rows], pagination


async def list_participant_notifications(
    session: AsyncSession,
    principal: StaffPrincipal,
    participant_id: uuid.UUID,
    params: PageParams,
    filters: NotificationFilters,
) -> tuple[list[NotificationRow], Pagination]:
    participant, _ = await get_participant(session, principal, participant_id)
    statement = filters.apply(
        _with_participant().where(Notification.participant_id == participant.id)
    )
    return await _page(session, statement, params)


async def list_study_notifications(
    session: AsyncSession,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    params: PageParams,
    filters: NotificationFilters,
    *,
    site: str | None = None,
    participant: str | None = None,
) -> tuple[list[NotificationRow], Pagination]:
    """The study's delivery log. `site` and `participant` take a UUID or a code (422 when
    they name nothing the caller can reach)."""
    access = await require_study_capability(session, principal, study_id, Capability.READ)
    statement = _with_participant().where(Notification.study_id == study_id)
    if access.site_id is not None:
        statement = statement.where(Participant.site_id == access.site_id)
    if site is not None:
        site_row = await resolve_site(session, study_id, site)
        statement = statement.where(Participant.site_id == site_row.id)
    participant_id = await participant_filter(
        session, principal, participant, Capability.READ, study_id=study_id
    )
    if participant_id is not None:
        statement = statement.where(Notification.participant_id == participant_id)
    return await _page(session, filters.apply(statement), params)


@dataclass
class DeliveryStats:
    study_id: uuid.UUID
    total: int = 0
    by_status: dict[NotificationStatus, int] = field(
        default_factory=lambda: dict.fromkeys(NotificationStatus, 0)
    )
    by_channel: dict[NotificationChannel, dict[NotificationStatus, int]] = field(
        default_factory=lambda: {
            channel: dict.fromkeys(NotificationStatus, 0) for channel in NotificationChannel
        }
    )
    interrupted: int = 0
    retried: int = 0

    @property
    def delivery_rate(self) -> float | None:
        """Sent among those that reached an end other than cancellation."""
        ended = self.by_status[NotificationStatus.SENT] + self.by_status[NotificationStatus.FAILED]
        return round(self.by_status[NotificationStatus.SENT] / ended, 4) if ended else None


async def study_delivery_stats(
    session: AsyncSession,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    *,
    send_from: datetime | None,
    send_to: datetime | None,
) -> DeliveryStats:
    access = await require_study_capability(session, principal, study_id, Capability.READ)
    base = (
        select(Notification.id)
        .join(Participant, Participant.id == Notification.participant_id)
        .where(Notification.study_id == study_id)
    )
    if access.site_id is not None:
        base = base.where(Participant.site_id == access.site_id)
    if send_from is not None:
        base = base.where(Notification.send_at >= send_from)
    if send_to is not None:
        base = base.where(Notification.send_at < send_to)
    scoped = base.subquery()
    stats = DeliveryStats(study_id=study_id)
    counts = await session.execute(
        select(
            Notification.channel,
            Notification.status,
            func.count(),
            func.sum(case((Notification.error == INTERRUPTED, 1), else_=0)),
            func.sum(case((Notification.attempts > 1, 1), else_=0)),
        )
        .where(Notification.id.in_(select(scoped.c.id)))
        .group_by(Notification.channel, Notification.status)
    )
    for channel, status, count, interrupted, retried in counts.all():
        stats.total += int(count)
        stats.by_status[status] += int(count)
        stats.by_channel[channel][status] += int(count)
        stats.interrupted += int(interrupted or 0)
        stats.retried += int(retried or 0)
    return stats


async def resend_notification(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    notification_id: uuid.UUID,
    *,
    reason: str,
) -> NotificationRow:
    """Send a sent or failed notification again, as a new notification due now.

    A person's decision, audited: the one way a notification whose delivery is unknown (its
    worker died mid-send) goes out again. Refused (409) while the notification or an earlier
    resend of it is still pending, for a cancelled one, and for a participant who withdrew or
    opted out of the channel.
    """
    original = await session.get(Notification, notification_id)
    if original is None:
        raise NotFoundError("Notification not found")
    with not_found_as("Notification not found"):
        participant, access = await get_participant(session, principal, original.participant_id)
    access.require(Capability.EDIT_PARTICIPANTS)
    if original.status in (NotificationStatus.SCHEDULED, NotificationStatus.SENDING):
        raise ConflictError(
            "The notification is still being sent", details={"reason": "NOTIFICATION_PENDING"}
        )
    if original.status is NotificationStatus.CANCELLED:
        raise ConflictError(
            "A cancelled notification is not resent",
            details={"reason": "NOTIFICATION_CANCELLED", "cancel_reason": original.cancel_reason},
        )
    if participant.status is ParticipantStatus.WITHDRAWN:
        raise ConflictError(
            "The participant has withdrawn", details={"reason": "PARTICIPANT_WITHDRAWN"}
        )
    if await is_opted_out(session, participant.id, original.channel):
        raise ConflictError(
            "The participant has unsubscribed from this channel",
            details={"reason": "PARTICIPANT_UNSUBSCRIBED", "channel": original.channel.value},
        )
    earlier = (
        await session.scalars(select(Notification).where(Notification.resend_of == original.id))
    ).all()
    if any(
        row.status in (NotificationStatus.SCHEDULED, NotificationStatus.SENDING) for row in earlier
    ):
        raise ConflictError(
            "A resend of this notification is still pending", details={"reason": "RESEND_PENDING"}
        )
    resent = await schedule_notification(
        session,
        study_id=original.study_id,
        participant_id=original.participant_id,
        visit_id=original.visit_id,
        kind=original.kind,
        channel=original.channel,
        send_at=utcnow(),
        language=original.language,
        subject=original.subject,
        body=original.body,
        # Numbered: two people pressing "resend" at once write the same key, and one is refused.
        dedupe_key=f"resend:{original.id}:{len(earlier) + 1}",
        resend_of=original.id,
    )
    if resent is None:
        raise ConflictError(
            "A resend of this notification is still pending", details={"reason": "RESEND_PENDING"}
        )
    await record_about(
        session,
        context,
        AuditSubject(
            AuditCategory.DATA, "notification", resent.id, resent.study_id, resent.participant_id
        ),
        "notification.resend",
        before={"notification_id": str(original.id), **notification_snapshot(original)},
        after=notification_snapshot(resent),
        reason=reason,
    )
    return resent, participant.participant_code, participant.site_id
