"""Outgoing email, delivered by the backend EMAIL_BACKEND names.

- `smtp` (aiosmtplib): the only backend production accepts.
- `console`: the message, sign-in links included, printed on standard output, so `make run` works
  without a mail server. Development only: this is the one place a recipient's address and a
  message body are shown.
- `file`: one `.eml` file per message in EMAIL_FILE_DIR (readable by the owner only), for
  development and for tools that pick messages up from a folder.

Delivery problems are logged and swallowed: an email is sent after the request that caused it has
been answered, so there is nobody to raise to. Logs never carry the recipient's address or the
message body (which may hold a sign-in token): only the recipient's domain and the error's type.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib

from app.config import EmailBackend, Settings
from app.core.clock import utcnow
from app.core.logging import get_logger

logger = get_logger(__name__)

CONSOLE_RULE = "=" * 24


def build_message(settings: Settings, *, to: str, subject: str, text: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.EMAIL_FROM
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=_sender_domain(settings.EMAIL_FROM))
    message.set_content(text)
    return message


def _sender_domain(sender: str) -> str:
    """The domain of EMAIL_FROM, so Message-ID needs no (possibly slow) host name lookup."""
    address = sender.rsplit("<", 1)[-1].rstrip(">").strip()
    domain = address.rpartition("@")[2]
    return domain or "localhost"


def _recipient_domain(to: str) -> str:
    return to.rpartition("@")[2].lower() or "?"


async def _send_smtp(settings: Settings, message: EmailMessage) -> None:
    await aiosmtplib.send(
        message,
        hostname=settings.SMTP_HOST,
        port=settings.SMTP_PORT,
        username=settings.SMTP_USERNAME or None,
        password=settings.SMTP_PASSWORD.get_secret_value() if settings.SMTP_PASSWORD else None,
        use_tls=settings.SMTP_USE_TLS,
        # Explicit, not aiosmtplib's opportunistic default: the setting says what happens.
        start_tls=settings.SMTP_START_TLS and not settings.SMTP_USE_TLS,
        timeout=settings.SMTP_TIMEOUT_SECONDS,
    )


def _print_message(message: EmailMessage, text: str) -> None:
    # The text as written, not the MIME body: quoted-printable would break long links in two.
    headers = "".join(f"{name}: {message[name]}\n" for name in ("From", "To", "Subject", "Date"))
    sys.stdout.write(
        f"{CONSOLE_RULE} Email (EMAIL_BACKEND=console, development only: not sent) "
        f"{CONSOLE_RULE}\n{headers}\n{text.rstrip()}\n{CONSOLE_RULE} End of email {CONSOLE_RULE}\n"
    )
    sys.stdout.flush()


def _write_message(folder: Path, message: EmailMessage) -> Path:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"{utcnow():%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}.eml"
    # Owner-only from creation: the message may hold a live sign-in link.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(message.as_bytes())
    return path


async def send_email(settings: Settings, *, to: str, subject: str, text: str) -> None:
    """Deliver one plain-text message; failures are logged, never raised."""
    backend = settings.email_backend
    try:
        message = build_message(settings, to=to, subject=subject, text=text)
        if backend is EmailBackend.CONSOLE:
            _print_message(message, text)
        elif backend is EmailBackend.FILE:
            await asyncio.to_thread(_write_message, settings.EMAIL_FILE_DIR, message)
        else:
            await _send_smtp(settings, message)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        where: dict[str, Any] = (
            {
                "smtp_code": getattr(exc, "code", None),
                "smtp_host": settings.SMTP_HOST,
                "smtp_port": settings.SMTP_PORT,
            }
            if backend is EmailBackend.SMTP
            else {}
        )
        # str(exc) is not logged: SMTP errors quote the recipient's address.
        logger.warning(
            "email_send_failed",
            backend=backend.value,
            error=type(exc).__name__,
            recipient_domain=_recipient_domain(to),
            **where,
        )
        return
    logger.info(
        "email_sent", backend=backend.value, recipient_domain=_recipient_domain(to), subject=subject
    )
