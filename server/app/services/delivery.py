"""What a message provider (an SMTP server, an SMS API) told us when it did not plainly take a
message, sorted by the one question that matters for sending at most once: could the message
have gone out anyway?"""

from __future__ import annotations

from enum import StrEnum

from app.core.logging import redact_text

MAX_ERROR_LENGTH = 500


class DeliveryFailureKind(StrEnum):
    # The provider certainly did not take the message and may later (connection refused before
    # the message was handed over, a 4xx reply): trying again cannot send it twice.
    TEMPORARY = "temporary"
    # The provider refused the message for good (a 5xx reply, an invalid number).
    PERMANENT = "permanent"
    # The message may have been taken: the connection broke or timed out after it was handed
    # over, or the provider answered something we cannot read. Never tried again by itself.
    UNKNOWN = "unknown"


class DeliveryError(Exception):
    """A message not (certainly) delivered. `description` is safe to store and show: built by
    us, with whatever the provider said redacted of addresses and numbers."""

    def __init__(self, kind: DeliveryFailureKind, description: str) -> None:
        self.kind = kind
        self.description = redact_text(description)[:MAX_ERROR_LENGTH]
        super().__init__(f"{kind.value}: {self.description}")
