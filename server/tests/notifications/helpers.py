"""Building participants and notifications, and reading them back, for the notification tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.models.notification import (
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationStatus,
)
from app.models.study import Site, Study
from app.services.notifications.scheduling import schedule_notification
from tests import factories

EMAIL = "ada.lovelace@example.org"
PHONE = "+44 20 7946 0958"
PHONE_E164 = "+442079460958"


@dataclass(frozen=True, slots=True)
class Person:
    id: uuid.UUID
    code: str
    study_id: uuid.UUID
    site_id: uuid.UUID | None


async def person(
    session: AsyncSession,
    settings: Settings,
    *,
    study: Study | None = None,
    site: Site | None = None,
    email: str | None = EMAIL,
    phone: str | None = PHONE,
    timezone: str = "UTC",
) -> Person:
    study = study or await factories.study(session, languages=["en", "fr"])
    code = f"P{uuid.uuid4().hex[:6].upper()}"
    row = await factories.participant(
        session, study, code, site, settings=settings, email=email, phone=phone, timezone=timezone
    )
    return Person(row.id, code, study.id, site.id if site else None)


async def notify(
    session: AsyncSession,
    who: Person,
    *,
    channel: NotificationChannel = NotificationChannel.EMAIL,
    send_at: datetime | None = None,
    visit_id: uuid.UUID | None = None,
    body: str = "Your next visit opens tomorrow. Open the Metricis app to take part.",
    language: str = "en",
    commit: bool = True,
) -> Notification:
    notification = await schedule_notification(
        session,
        study_id=who.study_id,
        participant_id=who.id,
        visit_id=visit_id,
        kind=NotificationKind.VISIT_REMINDER,
        channel=channel,
        send_at=send_at or utcnow() - timedelta(seconds=1),
        language=language,
        subject="Your visit is open" if channel is NotificationChannel.EMAIL else None,
        body=body,
        dedupe_key=f"test:{uuid.uuid4()}",
    )
    assert notification is not None
    if commit:
        await session.commit()
    return notification


async def reread(session: AsyncSession, notification_id: uuid.UUID) -> Notification:
    """The row as stored now (what another transaction committed included)."""
    found = await session.scalar(
        select(Notification)
        .where(Notification.id == notification_id)
        .execution_options(populate_existing=True)
    )
    assert found is not None
    return found


async def statuses(session: AsyncSession) -> dict[NotificationStatus, int]:
    rows = (
        await session.scalars(select(Notification).execution_options(populate_existing=True))
    ).all()
    counts: dict[NotificationStatus, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    return counts
