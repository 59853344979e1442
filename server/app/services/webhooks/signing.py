"""Secrets, the request body and the signature header (docs/webhooks.md, verifying a delivery).

`X-Metricis-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]`: each `v1` is the HMAC-SHA256,
keyed with a secret, of `<t>.<body>`. While a rotated secret is in its overlap period the header
carries one `v1` per secret in use, the new one first, so a receiver holding either verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

import orjson

from app import __version__
from app.services.outbox.dispatch import EventSnapshot

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix that tells what the value is, not a secret
SIGNATURE_HEADER = "X-Metricis-Signature"
EVENT_ID_HEADER = "X-Metricis-Event-Id"
EVENT_TYPE_HEADER = "X-Metricis-Event"
DELIVERY_ID_HEADER = "X-Metricis-Delivery-Id"
ATTEMPT_HEADER = "X-Metricis-Delivery-Attempt"
USER_AGENT = f"Metricis-Webhooks/{__version__}"


def generate_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def event_body(event: EventSnapshot) -> bytes:
    """The JSON body of every delivery of an event, byte for byte the same each time."""
    return orjson.dumps(
        {
            "id": str(event.id),
            "event": event.type.value,
            "version": event.version,
            "timestamp": event.occurred_at.isoformat().replace("+00:00", "Z"),
            "study_id": str(event.study_id),
            "data": event.payload,
        }
    )


def sign(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secrets_in_use: Sequence[str], timestamp: int, body: bytes) -> str:
    signatures = ",".join(f"v1={sign(secret, timestamp, body)}" for secret in secrets_in_use)
    return f"t={timestamp},{signatures}"
