from __future__ import annotations

import pytest

from app.config import (
    DEFAULT_JWT_SECRET,
    Environment,
    Settings,
    UnsafeProductionSettingsError,
    check_production_settings,
)
from app.main import create_app

SAFE = {
    "ENVIRONMENT": Environment.PRODUCTION,
    "DATABASE_URL": "postgresql+asyncpg://metricis@db/metricis",
    "JWT_SECRET_KEY": "j" * 48,
    "SESSION_SECRET_KEY": "s" * 48,
    "ENCRYPTION_KEYS": "x2Yc0Yl6Wm2-5VhT4A6mX3cY2p8bS9dQ1rF7gH0jK4M=",
    "ALLOWED_ORIGINS": "https://portal.example.org",
    "CELERY_BROKER_URL": "redis://redis.internal:6379/1",
}


def test_safe_production_settings_pass() -> None:
    check_production_settings(Settings.model_validate(SAFE))


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        ({"JWT_SECRET_KEY": DEFAULT_JWT_SECRET}, "JWT_SECRET_KEY is the development default"),
        ({"JWT_SECRET_KEY": "short"}, "JWT_SECRET_KEY is shorter"),
        (
            {"SESSION_SECRET_KEY": "dev-only-session-secret-change-me-0123456789"},
            "SESSION_SECRET_KEY",
        ),
        ({"DATABASE_URL": "sqlite+aiosqlite:///./x.db"}, "SQLite"),
        ({"ALLOWED_ORIGINS": "https://a.org,*"}, "wildcard"),
        ({"ENCRYPTION_KEYS": None}, "ENCRYPTION_KEYS"),
        ({"EMAIL_BACKEND": "console"}, "EMAIL_BACKEND is console; production needs smtp"),
        ({"EMAIL_BACKEND": "file"}, "EMAIL_BACKEND is file; production needs smtp"),
        ({"CELERY_BROKER_URL": None}, "embedded broker"),
    ],
)
def test_production_refuses_unsafe_settings(override: dict[str, object], complaint: str) -> None:
    values = {**SAFE, **override}
    values = {key: value for key, value in values.items() if value is not None}
    settings = Settings.model_validate(values)
    with pytest.raises(UnsafeProductionSettingsError) as raised:
        create_app(settings)
    assert complaint in str(raised.value)


def test_development_allows_defaults() -> None:
    check_production_settings(Settings(ENVIRONMENT=Environment.DEVELOPMENT))


def test_lists_accept_comma_separated_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALLOWED_ORIGINS", "https://a.org, https://b.org")
    monkeypatch.setenv("TRUSTED_PROXIES", '["10.0.0.1"]')
    settings = Settings()
    assert settings.ALLOWED_ORIGINS == ["https://a.org", "https://b.org"]
    assert settings.TRUSTED_PROXIES == ["10.0.0.1"]
