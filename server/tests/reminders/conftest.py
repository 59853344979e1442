"""Reminders reuse the schedules suite's study (two sites, Paris and New York) and the
notifications suite's real SMTP server, SMS API and committed databases."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models.notification import Notification
from app.services.schedules.reminder_scan import ReminderScanReport, scan_batch
from tests.notifications.conftest import (  # noqa: F401 - fixtures
    committed_settings,
    sms_api,
    smtp_server,
)
from tests.schedules.conftest import email_rule, world  # noqa: F401 - fixtures

OPENING = {"anchor": "window_open", "offset_days": 0, "local_time": "09:00"}


def closing_rule(local_time: str = "18:30") -> dict[str, Any]:
    """ "1 day before close": on the window's last day."""
    return email_rule(
        anchor="window_close",
        offset_days=-1,
        local_time=local_time,
        templates={
            "en": {
                "subject": "{visit_label} closes tomorrow",
                "body": "Hello {participant_code}, last day tomorrow ({window_closes}): {link}",
            },
        },
    )


async def scan(session: AsyncSession, settings: Settings, now: datetime) -> ReminderScanReport:
    """Every batch of one scan at `now`, in the session's transaction."""
    report = ReminderScanReport()
    while await scan_batch(session, settings, now, report):
        pass
    return report


async def reminders_of(session: AsyncSession, participant_id: str) -> list[Notification]:
    rows = await session.scalars(
        select(Notification)
        .where(Notification.participant_id == uuid.UUID(str(participant_id)))
        .order_by(Notification.send_at)
        .execution_options(populate_existing=True)
    )
    return list(rows.all())
