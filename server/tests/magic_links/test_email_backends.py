"""The console and file email backends (development), and which backend each environment uses."""

from __future__ import annotations

import stat
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import httpx
import pytest

from app.config import EmailBackend, Environment, Settings
from app.services.email import send_email
from tests.conftest import make_settings
from tests.magic_links.conftest import PUBLIC_BASE_URL, TOKEN_IN_LINK, People


@pytest.fixture
def settings(database_url: str, storage_dir: Path) -> Settings:
    """The `app` fixture's settings: magic-link email is printed, as `make run` does."""
    return make_settings(
        database_url,
        storage_dir,
        EMAIL_BACKEND=EmailBackend.CONSOLE,
        PUBLIC_BASE_URL=PUBLIC_BASE_URL,
    )


async def test_console_backend_prints_the_magic_link_that_signs_in(
    client: httpx.AsyncClient, people: People, capsys: pytest.CaptureFixture[str]
) -> None:
    participant = await people.participant(email="grace.hopper@example.org")
    capsys.readouterr()

    response = await client.post("/api/auth/magic-link", json={"email": "grace.hopper@example.org"})
    assert response.status_code == 202

    printed = capsys.readouterr().out
    assert "EMAIL_BACKEND=console" in printed
    assert "To: grace.hopper@example.org" in printed
    assert "Subject: Your Metricis sign-in link" in printed
    found = TOKEN_IN_LINK.search(printed)
    assert found is not None, printed
    verified = await client.post("/api/auth/magic-link/verify", json={"token": found.group(1)})
    assert verified.status_code == 200, verified.text
    assert verified.json()["participant"]["id"] == str(participant.id)


async def test_file_backend_writes_one_owner_only_eml_per_message(
    database_url: str, storage_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "mail"
    settings = make_settings(
        database_url, storage_dir, EMAIL_BACKEND=EmailBackend.FILE, EMAIL_FILE_DIR=folder
    )
    await send_email(settings, to="someone@example.org", subject="Hello", text="Line one\n")
    await send_email(settings, to="other@example.org", subject="Again", text="Line two\n")

    files = sorted(folder.glob("*.eml"))
    assert len(files) == 2
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    messages = [BytesParser(policy=policy.default).parsebytes(f.read_bytes()) for f in files]
    assert all(isinstance(message, EmailMessage) for message in messages)
    assert sorted(str(message["To"]) for message in messages) == [
        "other@example.org",
        "someone@example.org",
    ]
    assert "someone@example.org" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        (Environment.DEVELOPMENT, EmailBackend.CONSOLE),
        (Environment.TEST, EmailBackend.SMTP),
        (Environment.PRODUCTION, EmailBackend.SMTP),
    ],
)
def test_the_default_backend_follows_the_environment(
    environment: Environment, expected: EmailBackend
) -> None:
    assert Settings(ENVIRONMENT=environment).email_backend is expected
    assert Settings(ENVIRONMENT=environment, EMAIL_BACKEND="file").email_backend is (
        EmailBackend.FILE
    )
