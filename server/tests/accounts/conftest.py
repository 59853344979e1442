"""Fixtures for account tests: a real SMTP server (aiosmtpd) on 127.0.0.1 and staff accounts."""

from __future__ import annotations

import re
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import AuditEvent
from tests.magic_links.conftest import ReceivedMail, SmtpServer, settings, smtp_server

__all__ = ["settings", "smtp_server"]

LINK = re.compile(r"https://metricis\.example\.org/staff/([a-z-]+)\?token=([A-Za-z0-9_-]+)")


def link_token(mail: ReceivedMail, page: str) -> str:
    """The token of the link to `page` (`invitation`, `reset-password`) in a received email."""
    found = LINK.search(mail.text)
    assert found is not None, mail.text
    assert found.group(1) == page
    return found.group(2)


def last_mail_to(server: SmtpServer, address: str) -> ReceivedMail:
    mails = [mail for mail in server.received if address in mail.recipients]
    assert mails, f"no mail to {address}"
    return mails[-1]


async def count_events(session: AsyncSession, action: str, **where: Any) -> int:
    statement = select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
    for column, value in where.items():
        statement = statement.where(getattr(AuditEvent, column) == value)
    return int(await session.scalar(statement) or 0)


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    if code is not None:
        assert body["error"]["code"] == code
    return body
