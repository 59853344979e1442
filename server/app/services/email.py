"""Outgoing email: one sender for every message the server writes (magic links, notifications),
delivered by the backend EMAIL_BACKEND names.

- `smtp` (aiosmtplib): the only backend production accepts. One connection carries every message
  of a sender's `async with` block, so a batch of notifications pays for one handshake.
- `console`: the message, sign-in links included, printed on standard output, so `make run` works
  without a mail server. Development only: this is the one place a recipient's address and a
  message body are shown.
- `file`: one `.eml` file per message in EMAIL_FILE_DIR (readable by the owner only), for
  development and for tools that pick messages up from a folder.

Nothing here blocks the event loop: SMTP is asynchronous, files are written in a thread.

A sender raises `DeliveryError` (app/services/delivery.py) saying whether the server may have
taken the message: the notification dispatcher retries only what was certainly refused.
`send_email`, for a message sent after its request has been answered (a magic link), logs and
swallows failures instead, since there is nobody to raise to. Logs never carry the recipient's
address or the message body (which may hold a sign-in token): only the recipient's domain and
the error's type.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.charset import QP, Charset
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTPUTF8
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiosmtplib

from app.config import EmailBackend, Settings
from app.core.clock import utcnow
from app.core.logging import get_logger
from app.services.delivery import DeliveryError, DeliveryFailureKind

logger = get_logger(__name__)

CONSOLE_RULE = "=" * 24


# Bodies in quoted-printable UTF-8: 7-bit clean for any server, readable in the raw source.
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """One plain-text message. Not printable: its text may hold a live sign-in link."""

    sender: str
    to: str = field(repr=False)
    subject: str
    text: str = field(repr=False)
    message_id: str
    date: str
    headers: tuple[tuple[str, str], ...] = ()

    def as_bytes(self, *, linesep: str = "\r\n", utf8: bool = False) -> bytes:
        """The message as it goes on the wire: 7-bit clean (encoded headers, a quoted-printable
        UTF-8 body) unless `utf8` (an address that needs SMTPUTF8).

        Written out directly rather than through `EmailMessage`, whose header parsing and
        folding cost about a millisecond a message: every value here is ours or validated,
        and a line break in one is refused, so no header can be injected.
        """
        if utf8 or not self.to.isascii():
            return self._as_utf8_bytes(linesep)
        for name, value in (
            ("To", self.to),
            ("Subject", self.subject),
            ("Message-ID", self.message_id),
            *self.headers,
        ):
            if "\r" in value or "\n" in value:
                raise ValueError(f"a line break in the {name} header")
        subject = (
            self.subject
            if self.subject.isascii()
            else Header(self.subject, "utf-8").encode(linesep=linesep)
        )
        lines = [
            f"From: {_header_address(self.sender)}",
            f"To: {self.to}",
            f"Subject: {subject}",
            f"Date: {self.date}",
            f"Message-ID: {self.message_id}",
            "MIME-Version: 1.0",
            'Content-Type: text/plain; charset="utf-8"',
            "Content-Transfer-Encoding: quoted-printable",
            *(f"{name}: {value}" for name, value in self.headers),
        ]
        body = _UTF8_QP.body_encode(self.text) or ""
        return (linesep.join(lines) + linesep + linesep + linesep.join(body.split("\n"))).encode(
            "ascii"
        )

    def _as_utf8_bytes(self, linesep: str) -> bytes:
        message = EmailMessage(policy=SMTPUTF8.clone(linesep=linesep))
        for name, value in (
            ("From", self.sender),
            ("To", self.to),
            ("Subject", self.subject),
            ("Date", self.date),
            ("Message-ID", self.message_id),
            *self.headers,
        ):
            message[name] = value
        message.set_content(self.text)
        return message.as_bytes()


@lru_cache(maxsize=8)
def _header_address(sender: str) -> str:
    """EMAIL_FROM as a header value, its display name encoded when it is not ASCII."""
    return sender if sender.isascii() else formataddr(parseaddr(sender), charset="utf-8")


@lru_cache(maxsize=8)
def envelope_address(sender: str) -> str:
    """The bare address of EMAIL_FROM, for MAIL FROM."""
    return parseaddr(sender)[1]


def build_message(
    settings: Settings,
    *,
    to: str,
    subject: str,
    text: str,
    headers: Mapping[str, str] | None = None,
) -> OutgoingEmail:
    return OutgoingEmail(
        sender=settings.EMAIL_FROM,
        to=to,
        subject=subject,
        text=text,
        message_id=make_msgid(domain=_sender_domain(settings.EMAIL_FROM)),
        date=formatdate(localtime=False),
        headers=tuple((headers or {}).items()),
    )


def _sender_domain(sender: str) -> str:
    """The domain of EMAIL_FROM, so Message-ID needs no (possibly slow) host name lookup."""
    address = sender.rsplit("<", 1)[-1].rstrip(">").strip()
    domain = address.rpartition("@")[2]
    return domain or "localhost"


def recipient_domain(to: str) -> str:
    return to.rpartition("@")[2].lower() or "?"


class EmailSender:
    """Delivers messages; used as `async with open_email_sender(settings) as sender`."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def send(self, message: OutgoingEmail) -> str:
        """Deliver one message; its Message-ID. Raises `DeliveryError`."""
        raise NotImplementedError

    async def close(self) -> None:
        return None


class ConsoleEmailSender(EmailSender):
    async def send(self, message: OutgoingEmail) -> str:
        # The text as written, not the MIME body: quoted-printable would break long links in two.
        headers = (
            f"From: {message.sender}\nTo: {message.to}\nSubject: {message.subject}\n"
            f"Date: {message.date}\n"
        )
        sys.stdout.write(
            f"{CONSOLE_RULE} Email (EMAIL_BACKEND=console, development only: not sent) "
            f"{CONSOLE_RULE}\n{headers}\n{message.text.rstrip()}\n"
            f"{CONSOLE_RULE} End of email {CONSOLE_RULE}\n"
        )
        sys.stdout.flush()
        return message.message_id


class FileEmailSender(EmailSender):
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def send(self, message: OutgoingEmail) -> str:
        try:
            await asyncio.to_thread(_write_message, self.folder, message)
        except OSError as exc:
            raise DeliveryError(
                DeliveryFailureKind.TEMPORARY, f"cannot write the message file: {exc.strerror}"
            ) from exc
        return message.message_id


def _write_message(folder: Path, message: OutgoingEmail) -> Path:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"{utcnow():%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}.eml"
    # Owner-only from creation: the message may hold a live sign-in link.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(message.as_bytes(linesep="\n", utf8=not message.to.isascii()))
    return path


_local_hostname: str | None = None


async def _helo_name() -> str:
    """This machine's name for EHLO, looked up once per process and off the event loop (the
    lookup may wait on DNS)."""
    global _local_hostname
    if _local_hostname is None:
        _local_hostname = await asyncio.to_thread(socket.getfqdn)
    return _local_hostname


def _smtp_refusal(stage: str, exc: aiosmtplib.SMTPResponseException) -> DeliveryError:
    """A reply code is the server's word: 4xx "not now", 5xx "never"; either way not taken."""
    kind = DeliveryFailureKind.TEMPORARY if 400 <= exc.code < 500 else DeliveryFailureKind.PERMANENT
    return DeliveryError(kind, f"SMTP {exc.code} at {stage}: {exc.message}")


class SmtpEmailSender(EmailSender):
    """One SMTP connection, opened at the first message and reused for the next ones."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: aiosmtplib.SMTP | None = None

    async def _connect(self) -> aiosmtplib.SMTP:
        settings = self.settings
        client = aiosmtplib.SMTP(
            hostname=settings.SMTP_HOST,
            port=settings.SMTP_PORT,
            username=settings.SMTP_USERNAME or None,
            password=settings.SMTP_PASSWORD.get_secret_value() if settings.SMTP_PASSWORD else None,
            use_tls=settings.SMTP_USE_TLS,
            # Explicit, not aiosmtplib's opportunistic default: the setting says what happens.
            start_tls=settings.SMTP_START_TLS and not settings.SMTP_USE_TLS,
            timeout=settings.SMTP_TIMEOUT_SECONDS,
            local_hostname=await _helo_name(),
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Nothing was handed over yet: certainly not sent.
            raise DeliveryError(
                DeliveryFailureKind.TEMPORARY,
                f"cannot open an SMTP session with {settings.SMTP_HOST}:{settings.SMTP_PORT} "
                f"({type(exc).__name__}: {exc})",
            ) from exc
        self._client = client
        return client

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None

    async def _begin(self, sender: str, options: list[str], encoding: str) -> aiosmtplib.SMTP:
        """MAIL FROM on the open connection, or on a new one when the server had closed it
        (idle timeout) before the message started: nothing was handed over, so it is safe."""
        client = self._client
        if client is not None and client.is_connected:
            try:
                await client.mail(sender, options=options, encoding=encoding)
                return client
            except aiosmtplib.SMTPServerDisconnected:
                self._drop()
        client = await self._connect()
        await client.mail(sender, options=options, encoding=encoding)
        return client

    async def send(self, message: OutgoingEmail) -> str:
        sender = envelope_address(message.sender)
        recipient = message.to
        # An address beyond ASCII needs SMTPUTF8; a server without it refuses the MAIL command,
        # a permanent refusal like any 5xx.
        needs_utf8 = not (sender + recipient).isascii()
        encoding = "utf-8" if needs_utf8 else "ascii"
        try:
            # Written before the transaction starts: a message that cannot be written must not
            # leave the connection in the middle of one.
            content = message.as_bytes(utf8=needs_utf8)
        except ValueError as exc:
            raise DeliveryError(
                DeliveryFailureKind.PERMANENT, f"the message cannot be written: {exc}"
            ) from exc
        stage = "MAIL"
        try:
            client = await self._begin(sender, ["SMTPUTF8"] if needs_utf8 else [], encoding)
            stage = "RCPT"
            await client.rcpt(recipient, encoding=encoding)
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset(self._client)
            raise _smtp_refusal(stage, exc) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Before DATA the server holds no message of ours: certainly not sent.
            self._drop()
            raise DeliveryError(
                DeliveryFailureKind.TEMPORARY,
                f"the SMTP session failed at {stage} ({type(exc).__name__}: {exc})",
            ) from exc
        try:
            await client.data(content)
        except aiosmtplib.SMTPResponseException as exc:
            # A reply code, to DATA or to the end of the content: the server refused it.
            raise _smtp_refusal("DATA", exc) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            # The content may have reached the server, which may have queued it before the
            # connection broke: whether it was taken is unknown.
            self._drop()
            raise DeliveryError(
                DeliveryFailureKind.UNKNOWN,
                f"the SMTP connection failed during DATA ({type(exc).__name__}); delivery unknown",
            ) from exc
        return message.message_id

    async def _reset(self, client: aiosmtplib.SMTP | None) -> None:
        """End a refused transaction so the connection can carry the next message."""
        if client is None or not client.is_connected:
            return
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, OSError):
            self._drop()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()


def open_email_sender(settings: Settings) -> EmailSender:
    backend = settings.email_backend
    if backend is EmailBackend.CONSOLE:
        return ConsoleEmailSender()
    if backend is EmailBackend.FILE:
        return FileEmailSender(settings.EMAIL_FILE_DIR)
    return SmtpEmailSender(settings)


async def send_email(settings: Settings, *, to: str, subject: str, text: str) -> None:
    """Deliver one plain-text message; failures are logged, never raised."""
    backend = settings.email_backend
    try:
        message = build_message(settings, to=to, subject=subject, text=text)
        async with open_email_sender(settings) as sender:
            await sender.send(message)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        where: dict[str, Any] = (
            {"smtp_host": settings.SMTP_HOST, "smtp_port": settings.SMTP_PORT}
            if backend is EmailBackend.SMTP
            else {}
        )
        if isinstance(exc, DeliveryError):
            where["outcome"] = exc.kind.value
        # str(exc) is not logged: SMTP errors quote the recipient's address.
        logger.warning(
            "email_send_failed",
            backend=backend.value,
            error=type(exc.__cause__ or exc).__name__,
            recipient_domain=recipient_domain(to),
            **where,
        )
        return
    logger.info(
        "email_sent", backend=backend.value, recipient_domain=recipient_domain(to), subject=subject
    )
