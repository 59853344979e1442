"""The validation error the consent modules share: 422 naming the request field at fault."""

from __future__ import annotations

from typing import Any

from app.core.errors import ValidationFailedError


def field_error(field: str, message: str, **extra: Any) -> ValidationFailedError:
    return ValidationFailedError(
        message, details={"errors": [{"field": field, "message": message}], **extra}
    )
