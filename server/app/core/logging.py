"""structlog for our logs and for uvicorn's and SQLAlchemy's, through one pipeline.

Every line carries the request id bound in contextvars by the request-context middleware.

Nothing secret leaves through a log line: tracebacks are the standard library's plain text,
without local variables (which held passwords and hashes, and whose pretty-printing stalled the
event loop for seconds), and every event passes `redact_secrets` before it is rendered.
"""

from __future__ import annotations

import logging
import logging.config
import re
from typing import Any

import structlog
from structlog.typing import EventDict, Processor

from app.config import Settings

REDACTED = "[REDACTED]"

# A key naming one of these (lower-cased, "-" read as "_") has its whole value redacted.
_SECRET_KEY_PARTS = (
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "api_key",
    "apikey",
    "access_code",
    "credential",
    "cookie",
    "email",
    "phone",
)
# Too short or too common to look for inside other names ("status_code" is no secret).
_SECRET_KEYS = frozenset({"code", "otp", "pin", "mobile"})

# Values that are secrets or contact details whatever their key, even inside longer text
# (an exception message, a traceback, a SQL parameter list).
_SECRET_VALUE = re.compile(
    "|".join(
        (
            r"\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*",  # a JWT: its header always starts with {"
            r"\$argon2(?:id|i|d)\$[\w$=,.+/-]+",  # an Argon2 password hash
            r"(?i:\bbearer\s+[\w.~+/=-]+)",  # a bearer credential of any shape
            r"[\w.!#%&'*+/=?^`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+",  # an email address
            r"(?<![\w+])\+\d(?:[ .()-]{0,2}\d){6,14}(?!\w)",  # an international phone number
            r"(?<![\w:.-])\(?\d{2,4}\)?(?: \d{2,4}){2,4}(?![\w:.-])",  # "06 12 34 56 78"
            r"(?<![\w.-])\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?![\w.-])",  # "(555) 123-4567"
        )
    )
)
# Added by ProcessorFormatter for its own use and removed before rendering.
_PROCESSOR_META_KEYS = frozenset({"_record", "_from_structlog"})


def _render_as_json(settings: Settings) -> bool:
    if settings.LOG_FORMAT == "auto":
        return settings.is_production
    return settings.LOG_FORMAT == "json"


def _drop_color_message(
    _logger: object, _method: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    # uvicorn attaches an ANSI-coloured copy of its message; JSON logs need only one.
    event_dict.pop("color_message", None)
    return event_dict


def _is_secret_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    name = key.lower().replace("-", "_")
    return name in _SECRET_KEYS or any(part in name for part in _SECRET_KEY_PARTS)


def _redact(value: object) -> object:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _SECRET_VALUE.sub(REDACTED, value)
    if isinstance(value, dict):
        return {
            key: REDACTED if _is_secret_key(key) else _redact(item) for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact(item) for item in value]
    # Renderers would print its repr; redact that text instead.
    return _redact(repr(value))


def redact_text(text: str) -> str:
    """The text with secrets and contact details replaced, as log lines get it: for text that is
    stored or shown (a provider's error message quotes the recipient's address)."""
    return _SECRET_VALUE.sub(REDACTED, text)


def redact_secrets(_logger: object, _method: str, event_dict: EventDict) -> EventDict:
    """Replace secrets and contact details anywhere in the event, by key name and by value shape."""
    for key, value in event_dict.items():
        if key not in _PROCESSOR_META_KEYS:
            event_dict[key] = REDACTED if _is_secret_key(key) else _redact(value)
    return event_dict


def configure_logging(settings: Settings) -> None:
    shared_processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
        # The traceback becomes plain text here, in every format, so redaction sees it too.
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    renderer: Processor
    if _render_as_json(settings):
        renderer = structlog.processors.JSONRenderer()
    else:
        # Its default exception formatter (Rich when installed) prints every frame's local
        # variables; exceptions arrive formatted already, and plain_traceback keeps it that way.
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )

    structlog.configure(
        processors=[
            # First: an event below the level is dropped before any processor runs (otherwise
            # every request paid for a timestamp and a redaction pass of a line never written).
            structlog.stdlib.filter_by_level,
            *shared_processors,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )

    level = settings.LOG_LEVEL.upper()
    formatter: dict[str, Any] = {
        "()": structlog.stdlib.ProcessorFormatter,
        "foreign_pre_chain": shared_processors,
        "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    }
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"structlog": formatter},
            "handlers": {
                "default": {"class": "logging.StreamHandler", "formatter": "structlog"},
            },
            "root": {"handlers": ["default"], "level": level},
            "loggers": {
                # uvicorn installs its own handlers; route them through ours instead.
                "uvicorn": {"handlers": [], "propagate": True},
                "uvicorn.error": {"handlers": [], "propagate": True},
                # The request-context middleware logs each request once, with its id.
                "uvicorn.access": {"handlers": [], "propagate": False},
                "sqlalchemy.engine": {
                    "level": "INFO" if settings.DEBUG else "WARNING",
                    "propagate": True,
                },
            },
        }
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
