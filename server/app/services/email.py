"""Outgoing email over SMTP (aiosmtplib).

Delivery problems are logged and swallowed: an email is sent after the request that caused it has
been answered, so there is nobody to raise to. Logs never carry the recipient's address or the
message body (which may hold a sign-in token): only the recipient's domain and the error's type.
"""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib

from app.config import Settings
from app.core.logging import get_logger

logger = get_logger(__name__)


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


async def send_email(settings: Settings, *, to: str, subject: str, text: str) -> None:
    """Send one plain-text message; failures are logged, never raised."""
    try:
        message = build_message(settings, to=to, subject=subject, text=text)
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
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        # str(exc) is not logged: SMTP errors quote the recipient's address.
        logger.warning(
            "email_send_failed",
            error=type(exc).__name__,
            smtp_code=getattr(exc, "code", None),
            recipient_domain=_recipient_domain(to),
            smtp_host=settings.SMTP_HOST,
            smtp_port=settings.SMTP_PORT,
        )
        return
    logger.info("email_sent", recipient_domain=_recipient_domain(to), subject=subject)
