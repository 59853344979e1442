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
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiosmtplib
from aiosmtplib.email import flatten_message

from app.config import EmailBackend, Settings
from app.core.clock import utcnow
from app.core.logging import get_logger
from app.services.delivery import DeliveryError, DeliveryFailureKind

logger = get_logger(__name__)

CONSOLE_RULE = "=" * 24


def build_message(
    settings: Settings,
    *,
    to: str,
    subject: str,
    text: str,
    headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.EMAIL_FROM
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=_sender_domain(settings.EMAIL_FROM))
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(text)
    return message


def _sender_domain(sender: str) -> str:
    """The domain of EMAIL_FROM, so Message-ID needs no (possibly slow) host name lookup."""
    address = sender.rsplit("<", 1)[-1].rstrip(">").strip()
    domain = address.rpartition("@")[2]
    return domain or "localhost"


def recipient_domain(to: str) -> str:
    return to.rpartition("@")[2].lower() or "?"


def _text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    content = body.get_content() if body is not None else ""
    return content if isinstance(content, str) else ""


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

    async def send(self, message: EmailMessage) -> str:
        """Deliver one message; its Message-ID. Raises `DeliveryError`."""
        raise NotImplementedError

    async def close(self) -> None:
        return None


class ConsoleEmailSender(EmailSender):
    async def send(self, message: EmailMessage) -> str:
        # The text as written, not the MIME body: quoted-printable would break long links in two.
        headers = "".join(
            f"{name}: {message[name]}\n" for name in ("From", "To", "Subject", "Date")
        )
        sys.stdout.write(
            f"{CONSOLE_RULE} Email (EMAIL_BACKEND=console, development only: not sent) "
            f"{CONSOLE_RULE}\n{headers}\n{_text_of(message).rstrip()}\n"
            f"{CONSOLE_RULE} End of email {CONSOLE_RULE}\n"
        )
        sys.stdout.flush()
        return str(message["Message-ID"])


class FileEmailSender(EmailSender):
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def send(self, message: EmailMessage) -> str:
        try:
            await asyncio.to_thread(_write_message, self.folder, message)
        except OSError as exc:
            raise DeliveryError(
                DeliveryFailureKind.TEMPORARY, f"cannot write the message file: {exc.strerror}"
            ) from exc
        return str(message["Message-ID"])


def _write_message(folder: Path, message: EmailMessage) -> Path:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"{utcnow():%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}.eml"
    # Owner-only from creation: the message may hold a live sign-in link.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(message.as_bytes())
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

    async def send(self, message: EmailMessage) -> str:
        sender = parseaddr(str(message["From"]))[1]
        recipient = parseaddr(str(message["To"]))[1]
        needs_utf8 = not (sender + recipient).isascii()
        stage = "MAIL"
        try:
            client = await self._begin(sender, [], "utf-8" if needs_utf8 else "ascii")
            options: list[str] = []
            if needs_utf8 and not client.supports_extension("smtputf8"):
                await self._reset(client)
                raise DeliveryError(
                    DeliveryFailureKind.PERMANENT,
                    "the address is not ASCII and the SMTP server does not support SMTPUTF8",
                )
            cte_type = "8bit" if client.supports_extension("8bitmime") else "7bit"
            stage = "RCPT"
            await client.rcpt(
                recipient, options=options, encoding="utf-8" if needs_utf8 else "ascii"
            )
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
        content = flatten_message(message, utf8=needs_utf8, cte_type=cte_type)
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
        return str(message["Message-ID"])

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
