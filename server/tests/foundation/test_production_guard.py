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
    "AUDIT_CHAIN_KEYS": "k1:" + "QUJD" * 11,
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
        ({"AUDIT_CHAIN_KEYS": None}, "AUDIT_CHAIN_KEYS is not set"),
        (
            {"STORAGE_BACKEND": "s3", "S3_BUCKET": "b", "S3_ENDPOINT_URL": "http://minio:9000"},
            "S3_ENDPOINT_URL is not an https address",
        ),
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


def test_audit_chain_keys_are_parsed_newest_first_and_derived_outside_production() -> None:
    settings = Settings(AUDIT_CHAIN_KEYS="k2:" + "QkJC" * 11 + ", k1:" + "QUFB" * 11)
    assert [key_id for key_id, _ in settings.audit_chain_keys] == ["k2", "k1"]
    assert settings.audit_chain_keys[0][1] == b"BBB" * 11
    assert not settings.audit_chain_keys_derived
    development = Settings(ENVIRONMENT=Environment.DEVELOPMENT)
    assert development.audit_chain_keys_derived
    [(key_id, secret)] = development.audit_chain_keys
    assert key_id == "dev" and len(secret) == 32
    # Derived from SESSION_SECRET_KEY: another secret, another key.
    other = Settings(SESSION_SECRET_KEY="x" * 48).audit_chain_keys[0][1]
    assert other != secret


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("QUFB" * 11, "not `<id>:<base64 secret>`"),
        ("k 1:" + "QUFB" * 11, "not `<id>:<base64 secret>`"),
        ("k1:not*base64", "key 'k1' is not valid base64"),
        ("k1:" + "QUFB" * 5, "key 'k1' is shorter than 32 bytes"),
        ("k1:" + "QUFB" * 11 + ",k1:" + "QkJC" * 11, "names key 'k1' twice"),
    ],
)
def test_malformed_audit_chain_keys_are_refused_without_echoing_them(
    value: str, complaint: str
) -> None:
    with pytest.raises(ValueError, match="AUDIT_CHAIN_KEYS") as raised:
        Settings(AUDIT_CHAIN_KEYS=value)
    assert complaint in str(raised.value)
    assert value.split(":")[-1] not in str(raised.value)


def test_links_point_at_the_port_the_server_listens_on_unless_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    monkeypatch.delenv("PORT", raising=False)
    assert Settings(_env_file=None).PUBLIC_BASE_URL == "http://127.0.0.1:8000"
    assert Settings(_env_file=None, PORT=8123).PUBLIC_BASE_URL == "http://127.0.0.1:8123"
    monkeypatch.setenv("PORT", "8124")
    assert Settings(_env_file=None).PUBLIC_BASE_URL == "http://127.0.0.1:8124"
    given = Settings(_env_file=None, PORT=8123, PUBLIC_BASE_URL="https://metricis.example.org")
    assert given.PUBLIC_BASE_URL == "https://metricis.example.org"
