"""Logs leak nothing: no local variables in tracebacks, secrets and contact details redacted."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request

from app.config import Settings
from app.core.logging import REDACTED, get_logger, redact_secrets
from app.core.security import TokenType, create_token, hash_password
from app.main import create_app
from tests.conftest import lifespan_client, make_settings

PASSWORD = "Typed-Sign-In-Password-77"
EMAIL = "ada.lovelace@example.org"
PHONE = "+44 20 7946 0958"
# What an Argon2id hash looks like (a real one is made in the request test).
ARGON2_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g"


class ReprCanary:
    """A local variable that counts how often something rendered it."""

    def __init__(self) -> None:
        self.renders = 0

    def __repr__(self) -> str:
        self.renders += 1
        return "LOCAL-VARIABLE-RENDERED"


def _access_token(settings: Settings) -> str:
    return create_token(
        settings, subject="someone", token_type=TokenType.ACCESS, lifetime=timedelta(minutes=5)
    ).token


def _add_crashing_sign_in(app: FastAPI, canary: ReprCanary) -> None:
    probe_logger = get_logger("tests.probe")

    @app.post("/api/_probe/sign-in-crash")
    async def sign_in_crash(request: Request) -> None:
        body: dict[str, Any] = await request.json()
        password = body["password"]
        password_hash = await hash_password(password)
        authorization = request.headers["authorization"]
        local_canary = canary  # noqa: F841 - a local variable a traceback must not render
        probe_logger.warning(
            "probe_sign_in",
            password=password,
            authorization=authorization,
            email=body["email"],
            details={"refresh_token": authorization, "stored": password_hash},
        )
        token = authorization.removeprefix("Bearer ")
        raise RuntimeError(f"could not check {token} for {body['email']} with {password_hash}")


@pytest.mark.parametrize("log_format", ["console", "json"])
async def test_unexpected_error_logs_a_plain_redacted_traceback(
    database_url: str, storage_dir: Path, capfd: pytest.CaptureFixture[str], log_format: str
) -> None:
    settings = make_settings(database_url, storage_dir, LOG_FORMAT=log_format, LOG_LEVEL="info")
    app = create_app(settings)
    canary = ReprCanary()
    _add_crashing_sign_in(app, canary)
    token = _access_token(settings)
    capfd.readouterr()
    async with lifespan_client(app) as client:
        response = await client.post(
            "/api/_probe/sign-in-crash",
            json={"email": EMAIL, "password": PASSWORD},
            headers={"Authorization": f"Bearer {token}"},
        )
    logged = capfd.readouterr().err

    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "code": "INTERNAL_ERROR",
            "message": "An unexpected error occurred",
            "details": {},
        }
    }
    # The traceback is still there, plainly formatted...
    assert "unhandled_exception" in logged
    assert "Traceback (most recent call last)" in logged
    assert "RuntimeError: could not check" in logged
    assert REDACTED in logged
    # ...without local variables, secrets or contact details.
    assert canary.renders == 0
    assert "LOCAL-VARIABLE-RENDERED" not in logged
    for leaked in (PASSWORD, token, EMAIL, "$argon2"):
        assert leaked not in logged
        assert leaked not in response.text


def test_redaction_by_key_anywhere_in_the_event() -> None:
    event: dict[str, Any] = {
        "event": "probe",
        "password": PASSWORD,
        "current_password": PASSWORD,
        "Authorization": "Bearer abc",
        "headers": {"x-api-key": "k-123", "cookie": "sid=1", "accept": "text/html"},
        "attempts": [{"code": "123456", "access_code": "ABCD-EFGH"}, {"mfa_token": "t"}],
        "tokens": {"access_token": "a", "refresh_token": "r"},
        "totp_secret": "JBSWY3DPEHPK3PXP",
        "api_key": "k",
        "email": "someone@example.org",
        "phone_number": "0123",
    }
    redacted = redact_secrets(None, "info", event)
    assert redacted == {
        "event": "probe",
        "password": REDACTED,
        "current_password": REDACTED,
        "Authorization": REDACTED,
        "headers": {"x-api-key": REDACTED, "cookie": REDACTED, "accept": "text/html"},
        "attempts": [{"code": REDACTED, "access_code": REDACTED}, {"mfa_token": REDACTED}],
        "tokens": REDACTED,
        "totp_secret": REDACTED,
        "api_key": REDACTED,
        "email": REDACTED,
        "phone_number": REDACTED,
    }


@pytest.mark.parametrize(
    "secret",
    [
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
        ARGON2_HASH,
        EMAIL,
        "first.last+tag@clinic.local",
        PHONE,
        "+33612345678",
        "(555) 123-4567",
        "06 12 34 56 78",
        "Bearer opaque-token-value",
    ],
)
def test_redaction_by_value_inside_text(secret: str) -> None:
    event: dict[str, Any] = {
        "event": f"refused {secret} today",
        "nested": [("x", {"note": f"[{secret}]"})],
        "error": ValueError(f"bad value {secret}"),
    }
    redacted = redact_secrets(None, "info", event)
    assert secret not in str(redacted)
    assert redacted["event"] == f"refused {REDACTED} today"
    assert redacted["nested"] == [["x", {"note": f"[{REDACTED}]"}]]


def test_ordinary_values_are_left_alone() -> None:
    event: dict[str, Any] = {
        "event": "request",
        "method": "POST",
        "path": "/api/auth/login",
        "status": 500,
        "status_code": 500,
        "error_code": "INTERNAL_ERROR",
        "duration_ms": 12.34,
        "timestamp": "2026-05-01T10:00:00.123456Z",
        "due": "2026-05-01",
        "at": "2026-05-01 10:00:00",
        "request_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "participant_id": "5f0c3a2e-9b1d-4c7e-8a6f-2d3b4c5e6f70",
        "ip": "127.0.0.1",
        "count": 1234567890,
    }
    assert redact_secrets(None, "info", dict(event)) == event


def test_stdlib_records_with_tracebacks_are_plain_and_redacted(
    database_url: str, storage_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # uvicorn logs "Exception in ASGI application" through the standard library.
    create_app(make_settings(database_url, storage_dir, LOG_FORMAT="console"))
    canary = ReprCanary()
    try:
        raise RuntimeError(f"refused {EMAIL}")
    except RuntimeError:
        assert canary.renders == 0
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    logged = capfd.readouterr().err
    assert "Traceback (most recent call last)" in logged
    assert EMAIL not in logged and "LOCAL-VARIABLE-RENDERED" not in logged
    assert canary.renders == 0
