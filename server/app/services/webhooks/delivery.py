"""Sending one webhook delivery: resolve and check the target, sign, POST, classify the answer.

The request goes to the address that was checked (the Host header and TLS name stay those of
the URL), follows no redirect, ignores proxy settings of the environment (a proxy would reach
what the check refused) and must be answered within WEBHOOK_TIMEOUT_SECONDS in all. Only a 2xx
answer counts as delivered; the answer's body is not read.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.core.security import FieldEncryptor
from app.models.outbox import AttemptOutcome, DestinationKind, OutboxDelivery
from app.models.webhook import WebhookSubscription
from app.services.outbox.dispatch import (
    AttemptResult,
    ClaimedDelivery,
    Destination,
    EventSnapshot,
)
from app.services.webhooks import signing
from app.services.webhooks.targets import (
    IPAddress,
    ResolvedTarget,
    TargetRefusedError,
    host_header,
    pinned_url,
    resolve_target,
)


@dataclass(frozen=True, slots=True)
class WebhookJob:
    delivery_id: uuid.UUID
    attempt_number: int
    event: EventSnapshot
    url: str
    secrets: tuple[str, ...]  # in use now: the current one first, then one in its overlap


def secrets_in_use(subscription: WebhookSubscription, encryptor: FieldEncryptor) -> list[str]:
    """The current secret, and the previous one while its overlap period lasts."""
    found = [encryptor.decrypt(subscription.secret_encrypted)]
    expires = subscription.previous_secret_expires_at
    if subscription.previous_secret_encrypted and expires is not None and expires > utcnow():
        found.append(encryptor.decrypt(subscription.previous_secret_encrypted))
    return found


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def build_request(
    client: httpx.AsyncClient, job: WebhookJob, target: ResolvedTarget, address: IPAddress
) -> httpx.Request:
    """The signed POST to one checked address of the target, named as the URL names it."""
    body = signing.event_body(job.event)
    timestamp = int(time.time())
    request = client.build_request(
        "POST",
        pinned_url(target, address),
        content=body,
        headers={
            "Host": host_header(target),
            "Content-Type": "application/json",
            "User-Agent": signing.USER_AGENT,
            signing.EVENT_ID_HEADER: str(job.event.id),
            signing.EVENT_TYPE_HEADER: job.event.type.value,
            signing.DELIVERY_ID_HEADER: str(job.delivery_id),
            signing.ATTEMPT_HEADER: str(job.attempt_number),
            signing.SIGNATURE_HEADER: signing.signature_header(job.secrets, timestamp, body),
        },
    )
    if target.url.scheme == "https":
        # TLS names and verifies the URL's host, not the address connected to.
        request.extensions["sni_hostname"] = target.host
    return request


async def _post(
    client: httpx.AsyncClient, job: WebhookJob, settings: Settings
) -> tuple[int, AttemptOutcome, str | None]:
    target = await resolve_target(job.url, settings)
    last_error: Exception | None = None
    for address in target.addresses:
        request = build_request(client, job, target, address)
        try:
            response = await client.send(request, stream=True, follow_redirects=False)
        except httpx.ConnectError as exc:
            last_error = exc  # the next address of the name, if there is one
            continue
        await response.aclose()
        code = response.status_code
        if 200 <= code < 300:
            return code, AttemptOutcome.DELIVERED, None
        if response.is_redirect:
            return code, AttemptOutcome.HTTP_ERROR, f"HTTP {code}: redirects are not followed"
        return code, AttemptOutcome.HTTP_ERROR, f"HTTP {code}"
    assert last_error is not None
    raise last_error


async def send_webhook(
    client: httpx.AsyncClient, job: WebhookJob, settings: Settings
) -> AttemptResult:
    """One attempt; never raises (every failure is an outcome of the attempt)."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(settings.WEBHOOK_TIMEOUT_SECONDS):
            code, outcome, error = await _post(client, job, settings)
    except TargetRefusedError as exc:
        return AttemptResult(AttemptOutcome.REFUSED_TARGET, None, _elapsed_ms(started), str(exc))
    except (TimeoutError, httpx.TimeoutException):
        return AttemptResult(
            AttemptOutcome.TIMEOUT,
            None,
            _elapsed_ms(started),
            f"No answer within {settings.WEBHOOK_TIMEOUT_SECONDS:g} s",
        )
    except (httpx.HTTPError, OSError) as exc:
        return AttemptResult(
            AttemptOutcome.CONNECTION_ERROR,
            None,
            _elapsed_ms(started),
            f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
        )
    return AttemptResult(outcome, code, _elapsed_ms(started), error)


def webhook_client(settings: Settings) -> httpx.AsyncClient:
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_connections=settings.OUTBOX_DISPATCH_CONCURRENCY * 2),
    )


def webhook_destination(
    settings: Settings, encryptor: FieldEncryptor, client: httpx.AsyncClient
) -> Destination[WebhookJob]:
    async def prepare(
        session: AsyncSession, claimed: ClaimedDelivery
    ) -> WebhookJob | AttemptResult:
        subscription = await session.get(WebhookSubscription, claimed.subscription_id)
        assert subscription is not None  # deleting a webhook deletes its deliveries
        try:
            secrets = secrets_in_use(subscription, encryptor)
        except ValueError:
            return AttemptResult(
                AttemptOutcome.CONFIGURATION_ERROR,
                error="The webhook's secret cannot be decrypted with ENCRYPTION_KEYS; rotate it",
            )
        return WebhookJob(
            delivery_id=claimed.delivery_id,
            attempt_number=claimed.attempt_number,
            event=claimed.event,
            url=subscription.url,
            secrets=tuple(secrets),
        )

    async def send(job: WebhookJob) -> AttemptResult:
        return await send_webhook(client, job, settings)

    return Destination(
        kind=DestinationKind.WEBHOOK,
        # A paused (inactive) webhook's deliveries wait until it is active again.
        conditions=[
            OutboxDelivery.subscription_id.in_(
                select(WebhookSubscription.id).where(WebhookSubscription.active.is_(True))
            )
        ],
        prepare=prepare,
        send=send,
    )
