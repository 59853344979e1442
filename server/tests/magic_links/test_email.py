"""app.services.email against a real SMTP server, and when no server answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Settings
from app.services.email import send_email
from tests.conftest import make_settings
from tests.magic_links.conftest import EMAIL_FROM, SmtpServer, free_port


async def test_send_email_delivers_a_plain_text_message(
    settings: Settings, smtp_server: SmtpServer
) -> None:
    await send_email(settings, to="someone@example.org", subject="Hello", text="Body line\n")
    [mail] = smtp_server.received
    assert mail.recipients == ["someone@example.org"]
    assert mail.message["From"] == EMAIL_FROM
    assert mail.message["Subject"] == "Hello"
    assert mail.message["Message-ID"].endswith("@metricis.example.org>")
    assert mail.message["Date"]
    assert mail.text == "Body line\n"


async def test_send_failure_is_logged_without_the_address(
    database_url: str, storage_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    unreachable = make_settings(
        database_url, storage_dir, SMTP_HOST="127.0.0.1", SMTP_PORT=free_port()
    )
    await send_email(
        unreachable, to="private.person@example.org", subject="Sign in", text="token-abc123"
    )
    assert "email_send_failed" in caplog.text
    assert "private.person" not in caplog.text
    assert "token-abc123" not in caplog.text
