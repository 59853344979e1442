"""Domain errors: what services raise. The application maps them to HTTP in one place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class DomainError(Exception):
    """A refusal the caller can act on. Subclasses fix the HTTP status and the error code."""

    status_code: int = 400
    code: str = "BAD_REQUEST"

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        keep_changes: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.headers = headers or {}
        # A refusal that must leave a record (a failed login, a revoked token family, a
        # conflicting resubmission): the request's transaction commits instead of rolling back.
        self.keep_changes = keep_changes


class NotFoundError(DomainError):
    status_code = 404
    code = "NOT_FOUND"


class ConflictError(DomainError):
    status_code = 409
    code = "CONFLICT"


class ValidationFailedError(DomainError):
    status_code = 422
    code = "VALIDATION_ERROR"


class UnauthorizedError(DomainError):
    status_code = 401
    code = "UNAUTHORIZED"

    def __init__(self, message: str = "Authentication required", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class ForbiddenError(DomainError):
    status_code = 403
    code = "FORBIDDEN"


class LockedError(DomainError):
    status_code = 423
    code = "ACCOUNT_LOCKED"


class TooManyRequestsError(DomainError):
    status_code = 429
    code = "RATE_LIMITED"


class PayloadTooLargeError(DomainError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"


class ServiceUnavailableError(DomainError):
    status_code = 503
    code = "SERVICE_UNAVAILABLE"


def field_error(field: str, message: str, **details: Any) -> ValidationFailedError:
    """422 naming the request field at fault, in the `errors` list clients read field by field."""
    return ValidationFailedError(
        message, details={"errors": [{"field": field, "message": message}], **details}
    )


@contextmanager
def not_found_as(message: str) -> Iterator[None]:
    """A row whose study or participant the caller may not see is itself "not found": inside,
    any NotFoundError becomes one saying `message`, so the answer never tells which it was."""
    try:
        yield
    except NotFoundError:
        raise NotFoundError(message) from None
