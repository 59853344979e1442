"""A real SMTP server (aiosmtpd) on 127.0.0.1, the app pointed at it, and participants."""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models.participant import ParticipantStatus
from tests import factories
from tests.conftest import make_settings

PUBLIC_BASE_URL = "https://metricis.example.org/"
EMAIL_FROM = "Metricis <no-reply@metricis.example.org>"
TOKEN_IN_LINK = re.compile(
    re.escape("https://metricis.example.org/participant/sign-in?token=") + r"([A-Za-z0-9_-]+)"
)


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        assert body is not None
        content: str = body.get_content()
        return content.replace("\r\n", "\n")  # SMTP carries CRLF line ends

    @property
    def token(self) -> str:
        found = TOKEN_IN_LINK.search(self.text)
        assert found is not None, self.text
        return found.group(1)


@dataclass
class MailCollector:
    """aiosmtpd handler: keeps every message it accepts."""

    received: list[ReceivedMail] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = BytesParser(policy=policy.default).parsebytes(envelope.content)
        assert isinstance(message, EmailMessage)
        self.received.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


@dataclass(frozen=True, slots=True)
class SmtpServer:
    port: int
    collector: MailCollector

    @property
    def received(self) -> list[ReceivedMail]:
        return self.collector.received


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    collector = MailCollector()
    controller = Controller(collector, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SmtpServer(controller.port, collector)
    finally:
        controller.stop()


@pytest.fixture
def settings(database_url: str, storage_dir: Path, smtp_server: SmtpServer) -> Settings:
    """The settings of the `app` fixture (tests/conftest.py): email goes to the local server."""
    return make_settings(
        database_url,
        storage_dir,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=smtp_server.port,
        SMTP_TIMEOUT_SECONDS=5,
        PUBLIC_BASE_URL=PUBLIC_BASE_URL,
        EMAIL_FROM=EMAIL_FROM,
    )


@dataclass(frozen=True, slots=True)
class ParticipantRef:
    id: uuid.UUID
    code: str
    study_id: uuid.UUID
    study_code: str


class People:
    """Studies and participants written straight into the test transaction."""

    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings

    async def study(self) -> tuple[uuid.UUID, str]:
        study = await factories.study(
            self.session,
            f"ML-{uuid.uuid4().hex[:8].upper()}",
            ["fr", "en"],
            name="Magic link study",
        )
        return study.id, study.code

    async def participant(
        self,
        *,
        email: str | None = None,
        access_code: str | None = None,
        status: ParticipantStatus = ParticipantStatus.ENROLLED,
        study: tuple[uuid.UUID, str] | None = None,
    ) -> ParticipantRef:
        study_id, study_code = study or await self.study()
        participant = await factories.participant(
            self.session,
            study_id,
            status=status,
            language="fr",
            timezone="Europe/Paris",
            settings=self.settings,
            email=email,
            access_code=access_code,
        )
        return ParticipantRef(participant.id, participant.participant_code, study_id, study_code)


@pytest.fixture
def people(db_session: AsyncSession, settings: Settings) -> People:
    return People(db_session, settings)
