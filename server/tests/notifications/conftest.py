"""Real parts for notifications: an SMTP server (aiosmtpd) that can refuse, drop or stall, a small
HTTP server speaking the Twilio Messages API, and settings pointing the application at both."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.session import create_engine, create_sessionmaker
from tests.conftest import make_settings
from tests.magic_links.conftest import free_port

EMAIL_FROM = "Metricis <no-reply@metricis.example.org>"
PUBLIC_BASE_URL = "https://metricis.example.org"
SMS_SID = "AC0123456789abcdef0123456789abcdef"
SMS_TOKEN = "sms-auth-token-for-tests"
SMS_FROM = "+15005550006"
# Equal start and end: no quiet hours, so tests send at whatever time they run.
NO_QUIET_HOURS = {
    "NOTIFICATION_QUIET_HOURS_START": "00:00",
    "NOTIFICATION_QUIET_HOURS_END": "00:00",
}


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    recipients: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        assert body is not None
        content: str = body.get_content()
        return content.replace("\r\n", "\n")


@dataclass
class Mailbox:
    """An aiosmtpd handler that keeps what it accepts and misbehaves on request."""

    received: list[ReceivedMail] = field(default_factory=list)
    sessions: int = 0
    # A reply to RCPT instead of accepting, e.g. "550 5.1.1 <a@b.org>: no such user".
    rcpt_reply: str | None = None
    # A reply to the end of DATA instead of "250 OK".
    data_reply: str | None = None
    # Close the connection once the content has arrived, without a reply.
    drop_after_content: bool = False
    # Hold the reply to DATA until `release` is set; `stalled` tells the test it is held.
    stall: bool = False
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def handle_EHLO(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = BytesParser(policy=policy.default).parsebytes(envelope.content)
        assert isinstance(message, EmailMessage)
        self.received.append(ReceivedMail(list(envelope.rcpt_tos), message))
        if self.stall:
            self.stalled.set()
            await asyncio.to_thread(self.release.wait)
        if self.drop_after_content:
            server.transport.close()
        return self.data_reply or "250 OK"


@dataclass(frozen=True, slots=True)
class SmtpServer:
    port: int
    mailbox: Mailbox

    @property
    def received(self) -> list[ReceivedMail]:
        return self.mailbox.received


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SmtpServer(controller.port, mailbox)
    finally:
        mailbox.release.set()
        controller.stop()


@dataclass(frozen=True, slots=True)
class SmsRequest:
    path: str
    authorization: str
    form: dict[str, str]


@dataclass
class SmsApi:
    """What the fake Twilio API received, and what it answers next."""

    url: str = ""
    requests: list[SmsRequest] = field(default_factory=list)
    status: int = 201
    reply: dict[str, Any] | None = None


def _sms_handler(api: SmsApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            api.requests.append(SmsRequest(self.path, self.headers.get("Authorization", ""), form))
            reply = (
                api.reply
                if api.reply is not None
                else {
                    "sid": f"SM{uuid.uuid4().hex}",
                    "status": "queued",
                    "to": form.get("To"),
                }
            )
            payload = json.dumps(reply).encode()
            self.send_response(api.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


@pytest.fixture
def sms_api() -> Iterator[SmsApi]:
    api = SmsApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _sms_handler(api))
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


def delivery_settings(smtp_port: int, sms_url: str) -> dict[str, object]:
    """The settings that send through the local SMTP server and the fake SMS API."""
    return {
        "EMAIL_BACKEND": "smtp",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": smtp_port,
        "SMTP_TIMEOUT_SECONDS": 5,
        "EMAIL_FROM": EMAIL_FROM,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "SMS_BACKEND": "twilio",
        "SMS_API_BASE_URL": sms_url,
        "SMS_ACCOUNT_SID": SMS_SID,
        "SMS_AUTH_TOKEN": SMS_TOKEN,
        "SMS_FROM": SMS_FROM,
        "SMS_TIMEOUT_SECONDS": 5,
        **NO_QUIET_HOURS,
    }


@pytest.fixture
def settings(
    database_url: str, storage_dir: Path, smtp_server: SmtpServer, sms_api: SmsApi
) -> Settings:
    """The `app` fixture's settings (tests/conftest.py), pointed at the local servers."""
    return make_settings(
        database_url, storage_dir, **delivery_settings(smtp_server.port, sms_api.url)
    )


@pytest.fixture
def committed_settings(
    isolated_settings: Settings, storage_dir: Path, smtp_server: SmtpServer, sms_api: SmsApi
) -> Settings:
    """Settings on a database of the test's own, for the dispatcher, which commits for real."""
    return make_settings(
        isolated_settings.DATABASE_URL,
        storage_dir,
        **delivery_settings(smtp_server.port, sms_api.url),
    )


@asynccontextmanager
async def session_on(settings: Settings) -> AsyncIterator[AsyncSession]:
    """A session on the settings' database, whose commits are real."""
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            yield session
    finally:
        await engine.dispose()
