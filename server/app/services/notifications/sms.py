"""SMS providers behind one interface: a Twilio-compatible REST API, the console (development)
and none at all (SMS_BACKEND picks).

A provider is used as `async with open_sms_provider(settings) as provider`, so a batch of
messages shares one HTTP connection. `send` returns the provider's message id or raises
`DeliveryError` saying whether the provider may have taken the message.
"""

from __future__ import annotations

import uuid
from types import TracebackType
from typing import Any, Self

import httpx

from app.config import Settings, SmsBackend
from app.core.logging import get_logger
from app.services.delivery import DeliveryError, DeliveryFailureKind
from app.services.participants import mask_phone

logger = get_logger(__name__)


class SmsProvider:
    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def send(self, *, to: str, body: str) -> str:
        """Hand one message to the provider; its message id. `to` is E.164."""
        raise NotImplementedError

    async def close(self) -> None:
        return None


class DisabledSmsProvider(SmsProvider):
    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def send(self, *, to: str, body: str) -> str:
        raise DeliveryError(DeliveryFailureKind.PERMANENT, self.reason)


class ConsoleSmsProvider(SmsProvider):
    """Development: one log line per message, with the number masked; nothing is sent."""

    async def send(self, *, to: str, body: str) -> str:
        message_id = f"console-{uuid.uuid4().hex}"
        logger.info(
            "sms_console_not_sent", recipient=mask_phone(to), message_id=message_id, text=body
        )
        return message_id


class TwilioCompatibleSmsProvider(SmsProvider):
    """`POST {base}/2010-04-01/Accounts/{sid}/Messages.json` with basic auth (account sid and
    auth token) and the form fields To, From and Body; the answer's `sid` is the message id."""

    def __init__(
        self,
        *,
        base_url: str,
        account_sid: str,
        auth_token: str,
        sender: str,
        timeout_seconds: float,
    ) -> None:
        self.path = f"/2010-04-01/Accounts/{account_sid}/Messages.json"
        self.sender = sender
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            auth=httpx.BasicAuth(account_sid, auth_token),
            timeout=timeout_seconds,
            headers={"Accept": "application/json"},
        )

    async def send(self, *, to: str, body: str) -> str:
        try:
            response = await self._client.post(
                self.path, data={"To": to, "From": self.sender, "Body": body}
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # No connection, so no request: certainly not sent.
            raise DeliveryError(
                DeliveryFailureKind.TEMPORARY,
                f"cannot reach the SMS API ({type(exc).__name__})",
            ) from exc
        except httpx.HTTPError as exc:
            # The request may have arrived before the answer was lost.
            raise DeliveryError(
                DeliveryFailureKind.UNKNOWN,
                f"no answer from the SMS API ({type(exc).__name__}); delivery unknown",
            ) from exc
        status = response.status_code
        if 200 <= status < 300:
            sid = _field(response, "sid")
            if not sid:
                raise DeliveryError(
                    DeliveryFailureKind.UNKNOWN,
                    f"the SMS API answered {status} without a message sid; delivery unknown",
                )
            return sid
        problem = f"the SMS API answered {status}{_provider_error(response)}"
        if status == 429:
            raise DeliveryError(DeliveryFailureKind.TEMPORARY, problem)
        if 400 <= status < 500:
            # The request was refused as it stood (a bad number, an unsubscribed recipient,
            # wrong credentials): no message was created.
            raise DeliveryError(DeliveryFailureKind.PERMANENT, problem)
        # A server error may come after the message was created.
        raise DeliveryError(DeliveryFailureKind.UNKNOWN, problem + "; delivery unknown")

    async def close(self) -> None:
        await self._client.aclose()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _field(response: httpx.Response, name: str) -> str | None:
    value = _json(response).get(name)
    return str(value) if isinstance(value, str | int) and str(value) else None


def _provider_error(response: httpx.Response) -> str:
    code, message = _field(response, "code"), _field(response, "message")
    parts = [f"code {code}" if code else "", message or ""]
    text = ", ".join(part for part in parts if part)
    return f" ({text})" if text else ""


def open_sms_provider(settings: Settings) -> SmsProvider:
    backend = settings.sms_backend
    if backend is SmsBackend.CONSOLE:
        return ConsoleSmsProvider()
    if backend is SmsBackend.DISABLED:
        return DisabledSmsProvider("SMS is not configured here (SMS_BACKEND=disabled)")
    if not (settings.SMS_ACCOUNT_SID and settings.SMS_AUTH_TOKEN and settings.SMS_FROM):
        return DisabledSmsProvider(
            "SMS_BACKEND is twilio but SMS_ACCOUNT_SID, SMS_AUTH_TOKEN or SMS_FROM is not set"
        )
    return TwilioCompatibleSmsProvider(
        base_url=settings.SMS_API_BASE_URL,
        account_sid=settings.SMS_ACCOUNT_SID,
        auth_token=settings.SMS_AUTH_TOKEN.get_secret_value(),
        sender=settings.SMS_FROM,
        timeout_seconds=settings.SMS_TIMEOUT_SECONDS,
    )
