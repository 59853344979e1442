"""The SMTP server is down: the request still answers 202, and nothing leaks into the logs."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models.participant import MagicLinkToken
from tests.conftest import make_settings
from tests.magic_links.conftest import People, free_port


@pytest.fixture
def settings(database_url: str, storage_dir: Path) -> Settings:
    """Nothing listens on this port."""
    return make_settings(database_url, storage_dir, SMTP_HOST="127.0.0.1", SMTP_PORT=free_port())


async def test_unreachable_mail_server_still_answers_202(
    client: httpx.AsyncClient,
    people: People,
    db_session: AsyncSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    participant = await people.participant(email="offline@example.org")
    response = await client.post("/api/auth/magic-link", json={"email": "offline@example.org"})
    assert response.status_code == 202
    assert response.json() == {"status": "accepted"}
    # The link was created before sending was attempted; the delivery failure is only logged.
    links = (
        await db_session.scalars(
            select(MagicLinkToken).where(MagicLinkToken.participant_id == participant.id)
        )
    ).all()
    assert len(links) == 1
    assert "email_send_failed" in caplog.text
    assert "offline@example.org" not in caplog.text
