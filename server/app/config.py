"""Settings from the environment and `.env`, with the names of the original design."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from datetime import time
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Development secrets. They let `make run` work with nothing configured; production refuses them.
DEFAULT_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789abcdef"  # noqa: S105
DEFAULT_SESSION_SECRET = "dev-only-session-secret-change-me-0123456789"  # noqa: S105
# A valid Fernet key for development only; production must set ENCRYPTION_KEYS.
DEFAULT_ENCRYPTION_KEY = "ZGV2LW9ubHktZmVybmV0LWtleS1jaGFuZ2UtbWUtMDA="
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./metricis.db"
# The id of the audit chain key derived from SESSION_SECRET_KEY when AUDIT_CHAIN_KEYS is unset.
DERIVED_AUDIT_CHAIN_KEY_ID = "dev"
AUDIT_CHAIN_KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,32}")
AUDIT_CHAIN_KEY_MIN_BYTES = 32
# kombu's filesystem transport: messages are files in folders under STORAGE_DIR.
EMBEDDED_BROKER_URL = "filesystem://"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class SessionStorageBackend(StrEnum):
    MEMORY = "memory"
    REDIS = "redis"


class StorageBackend(StrEnum):
    LOCAL = "local"
    S3 = "s3"


class EmailBackend(StrEnum):
    CONSOLE = "console"
    FILE = "file"
    SMTP = "smtp"


class SmsBackend(StrEnum):
    # No SMS leaves: an SMS notification fails with an error saying so.
    DISABLED = "disabled"
    # A redacted line in the log instead of a message (development).
    CONSOLE = "console"
    # A Twilio-compatible REST API (SMS_API_BASE_URL, SMS_ACCOUNT_SID, SMS_AUTH_TOKEN).
    TWILIO = "twilio"


def _split_csv(value: Any) -> Any:
    """Accept `a,b` as well as a JSON list for list settings given in the environment."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            import json

            return json.loads(stripped)
        return [item.strip() for item in stripped.split(",") if item.strip()]
    return value


def _parse_audit_chain_key(item: str, position: int) -> tuple[str, bytes]:
    key_id, separator, encoded = item.strip().partition(":")
    if not separator or not AUDIT_CHAIN_KEY_ID_PATTERN.fullmatch(key_id):
        raise ValueError(
            f"AUDIT_CHAIN_KEYS entry {position} is not `<id>:<base64 secret>` with an id of "
            "1 to 32 letters, digits, '_', '.' or '-'"
        )
    padded = encoded.strip() + "=" * (-len(encoded.strip()) % 4)
    try:
        secret = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"AUDIT_CHAIN_KEYS key '{key_id}' is not valid base64") from None
    return key_id, secret


class OidcProvider(BaseModel):
    """One OpenID Connect identity provider for staff single sign-on (docs/accounts.md)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    # The issuer exactly as the provider's discovery document and id tokens name it.
    issuer: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    scopes: list[str] = ["openid", "email", "profile"]
    # Only verified addresses of these domains may sign in; empty: any domain.
    allowed_email_domains: list[str] = []
    # Create an account at the first sign-in of an unknown address (with `default_role`);
    # otherwise only existing accounts may sign in.
    create_accounts: bool = False
    default_role: Literal["researcher", "coordinator", "read_only"] = "read_only"
    # Where the provider sends the browser back; unset: the API's own callback route under
    # PUBLIC_BASE_URL. Registered at the provider exactly as it is.
    redirect_uri: str | None = None
    # A name for the sign-in button; unset: the provider's key.
    display_name: str | None = None

    @field_validator("allowed_email_domains")
    @classmethod
    def _lower_domains(cls, value: list[str]) -> list[str]:
        return [domain.strip().lower().lstrip("@") for domain in value if domain.strip()]

    @field_validator("scopes")
    @classmethod
    def _openid_scope(cls, value: list[str]) -> list[str]:
        if "openid" not in value:
            raise ValueError("scopes must include openid")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
        # A refused value is not repeated in the error: it may be a secret (a key, a URL with
        # its password).
        hide_input_in_errors=True,
    )

    ENVIRONMENT: Environment = Environment.DEVELOPMENT
    DEBUG: bool = False
    LOG_LEVEL: str = "info"
    LOG_FORMAT: Literal["auto", "json", "console"] = "auto"

    HOST: str = "127.0.0.1"
    PORT: int = Field(default=8000, ge=1, le=65535)
    WORKERS: int = Field(default=1, ge=1, le=64)
    # Move start-up objects out of the garbage collector's scans (gc.freeze) once the app is up,
    # and collect the young generation less often (see app.main).
    GC_FREEZE_AT_STARTUP: bool = True
    # On SIGTERM the server stops accepting at once and gives requests in flight this long to
    # finish; then they are cancelled and the process exits.
    SHUTDOWN_GRACE_SECONDS: float = Field(default=10.0, ge=0, le=300)

    DATABASE_URL: str = DEFAULT_DATABASE_URL
    # The role that owns the schema, for `metricis db upgrade|downgrade|create-runtime-role`;
    # unset: DATABASE_URL. The API and workers then run under a role that owns nothing.
    MIGRATION_DATABASE_URL: str | None = None
    DATABASE_POOL_SIZE: int = Field(default=10, ge=1)
    DATABASE_MAX_OVERFLOW: int = Field(default=10, ge=0)
    # Connections older than this are replaced when next checked out.
    DATABASE_POOL_RECYCLE_SECONDS: int = Field(default=1800, ge=30)
    DATABASE_CONNECT_TIMEOUT_SECONDS: float = Field(default=5.0, gt=0)
    DATABASE_STATEMENT_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0)

    REDIS_URL: str = "redis://localhost:6379/0"
    REDIS_TIMEOUT_SECONDS: float = Field(default=1.0, gt=0)
    SESSION_STORAGE_BACKEND: SessionStorageBackend = SessionStorageBackend.MEMORY

    # Background work (Celery). Unset: REDIS_URL when Redis is the session store, otherwise the
    # embedded broker, folders under STORAGE_DIR that `metricis serve` works through itself.
    CELERY_BROKER_URL: str | None = None
    # A task still running after the soft limit is told to stop (SoftTimeLimitExceeded); after
    # the hard limit its worker process is killed and the message goes back to the queue.
    WORKER_TASK_SOFT_TIME_LIMIT_SECONDS: int = Field(default=240, ge=1)
    WORKER_TASK_TIME_LIMIT_SECONDS: int = Field(default=300, ge=1)
    # How often beat records that it runs; health reports it stale after three missed ticks.
    BEAT_HEARTBEAT_SECONDS: float = Field(default=30.0, ge=1)
    # How often beat runs the scan storing visit statuses (reads never wait for it).
    VISIT_STATUS_SCAN_SECONDS: float = Field(default=60.0, ge=1)

    # Exports (docs/exports.md): how long a finished export file is kept before the sweep
    # removes it, and how often beat runs the sweep and looks for queued jobs.
    EXPORT_EXPIRY_HOURS: float = Field(default=72.0, gt=0, le=24 * 90)
    EXPORT_SWEEP_SECONDS: float = Field(default=300.0, ge=1)
    EXPORT_SCAN_SECONDS: float = Field(default=30.0, ge=0.2)

    # The outbox (docs/webhooks.md): how often beat asks for due deliveries (a commit that wrote
    # outbox rows asks at once as well), and how deliveries are retried: exponential backoff
    # from the base, capped, with jitter; the delivery is dead after OUTBOX_MAX_ATTEMPTS.
    OUTBOX_SCAN_SECONDS: float = Field(default=10.0, ge=0.2)
    OUTBOX_MAX_ATTEMPTS: int = Field(default=15, ge=1, le=100)
    OUTBOX_RETRY_BASE_SECONDS: float = Field(default=10.0, ge=0.01)
    OUTBOX_RETRY_MAX_SECONDS: float = Field(default=3600.0, ge=0.01)
    # A claimed delivery whose worker did not record the result within this long (it died) is
    # claimed again; longer than a webhook's timeout, so a slow delivery is never sent twice at
    # once by this server.
    OUTBOX_LEASE_SECONDS: float = Field(default=60.0, ge=1)
    # Deliveries one dispatcher run sends at once, and how long a run goes on before it leaves
    # the rest to the next one. Short, so that a worker serving several queues takes turns: with
    # a receiver that keeps failing, webhook runs of 50 s held both processes of a shared worker
    # and REDCap pushes waited behind them (docs/reliability.md, the combined fault run).
    OUTBOX_DISPATCH_CONCURRENCY: int = Field(default=8, ge=1, le=64)
    OUTBOX_DISPATCH_MAX_SECONDS: float = Field(default=5.0, ge=1)

    # Webhooks: the whole request (connect, send, answer) must finish within the timeout.
    WEBHOOK_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0, le=60)
    # Hosts (names or addresses) and networks (CIDR) that webhooks may target although they are
    # loopback, private, link-local or otherwise not public. Empty: only public addresses.
    WEBHOOK_ALLOWED_HOSTS: Annotated[list[str], NoDecode] = []

    # REDCap (docs/redcap.md): each call to a REDCap API must connect, and then answer,
    # within this long; a push's lease is at least twice it. Its API URL must pass the same
    # address check as a webhook's (WEBHOOK_ALLOWED_HOSTS names the exceptions).
    REDCAP_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0, le=300)

    JWT_SECRET_KEY: SecretStr = SecretStr(DEFAULT_JWT_SECRET)
    SESSION_SECRET_KEY: SecretStr = SecretStr(DEFAULT_SESSION_SECRET)
    JWT_ALGORITHM: Literal["HS256"] = "HS256"
    ACCESS_TOKEN_EXPIRE_MINUTES: int = Field(default=30, ge=1)
    REFRESH_TOKEN_EXPIRE_DAYS: int = Field(default=14, ge=1)
    SESSION_IDLE_TIMEOUT_MINUTES: int = Field(default=30, ge=1)
    # Participants sign in again (access code or a new link) when their token expires.
    PARTICIPANT_TOKEN_EXPIRE_HOURS: int = Field(default=24, ge=1)
    MAGIC_LINK_EXPIRE_MINUTES: int = Field(default=15, ge=1, le=1440)
    # Staff invitations (docs/accounts.md): how long an emailed link works, and whether every
    # invited account must enrol two-factor authentication when it accepts.
    INVITATION_EXPIRE_HOURS: int = Field(default=72, ge=1, le=720)
    INVITATIONS_REQUIRE_TWO_FACTOR: bool = False
    # Password reset links (docs/accounts.md): short-lived, single use.
    PASSWORD_RESET_EXPIRE_MINUTES: int = Field(default=30, ge=5, le=240)
    # Single sign-on (docs/accounts.md): identity providers by key (a JSON object), how long a
    # started sign-in may take at the provider, and the timeout of calls to a provider.
    OIDC_PROVIDERS: dict[str, OidcProvider] = {}
    OIDC_LOGIN_EXPIRE_SECONDS: int = Field(default=600, ge=60, le=3600)
    OIDC_HTTP_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0, le=60)
    # Argon2id cost. Production refuses less than OWASP's minimum (19 MiB, 2 passes).
    PASSWORD_HASH_TIME_COST: int = Field(default=3, ge=1, le=20)
    PASSWORD_HASH_MEMORY_KIB: int = Field(default=65536, ge=8, le=4_194_304)
    PASSWORD_HASH_PARALLELISM: int = Field(default=4, ge=1, le=16)
    # Fernet keys, newest first; older keys still decrypt so they can be rotated out.
    ENCRYPTION_KEYS: Annotated[list[SecretStr], NoDecode] = [SecretStr(DEFAULT_ENCRYPTION_KEY)]

    # The audit chain (docs/adr/0004-audit-chain.md). HMAC-SHA256 keys as `<id>:<base64 secret>`
    # (at least 32 bytes), comma-separated, newest first: the first signs new links and
    # checkpoints, all of them verify. Unset: a key derived from SESSION_SECRET_KEY, outside
    # production only.
    AUDIT_CHAIN_KEYS: Annotated[list[SecretStr], NoDecode] = []
    # How often beat runs the chainer, and how many links one of its transactions writes.
    AUDIT_CHAIN_INTERVAL_SECONDS: float = Field(default=5.0, ge=0.5, le=3600)
    AUDIT_CHAIN_BATCH_SIZE: int = Field(default=1000, ge=1, le=100_000)
    # How long the chainer waits, at a number it cannot see yet, for the transactions that may
    # still commit it; then it stops there and goes on at its next run.
    AUDIT_CHAIN_GAP_WAIT_SECONDS: float = Field(default=2.0, ge=0, le=60)
    # A signed checkpoint of the chain's end every this many links, and at least this often.
    AUDIT_CHECKPOINT_EVERY: int = Field(default=1000, ge=1)
    AUDIT_CHECKPOINT_MAX_AGE_HOURS: float = Field(default=24.0, gt=0, le=24 * 7)
    # Where checkpoints are appended as JSON lines; unset: STORAGE_DIR/audit-checkpoints.
    AUDIT_CHECKPOINT_DIR: Path | None = None

    ALLOWED_ORIGINS: Annotated[list[str], NoDecode] = [
        "http://localhost:5173",
        "http://localhost:3000",
        "http://localhost:3001",
    ]

    RATE_LIMIT_ENABLED: bool = True
    # Anonymous requests, per client address.
    RATE_LIMIT_PER_MINUTE: int = Field(default=60, ge=1)
    # Requests with a valid access token, per signed-in user or participant: a clinic behind one
    # NAT address must not share one budget. Sized for a portal page that fires a dozen requests.
    AUTHENTICATED_RATE_LIMIT_PER_MINUTE: int = Field(default=600, ge=1)
    # Sign-in, refresh, 2FA verification, magic links and access codes, per client address.
    AUTH_RATE_LIMIT_PER_MINUTE: int = Field(default=10, ge=1)
    # Trust X-Forwarded-For only from these proxies, so clients cannot pick their rate-limit key.
    TRUSTED_PROXIES: Annotated[list[str], NoDecode] = []

    MAX_REQUEST_BODY_BYTES: int = Field(default=10 * 1024 * 1024, ge=1024)

    STORAGE_DIR: Path = Path("./data")
    # Where exports, reports and source documents live (docs/configuration.md, file storage):
    # `local`, folders under STORAGE_DIR, or `s3`, an S3-compatible bucket every API machine and
    # worker shares. Scratch files, the embedded broker and audit checkpoints stay in STORAGE_DIR.
    STORAGE_BACKEND: StorageBackend = StorageBackend.LOCAL
    S3_BUCKET: str | None = None
    # Unset: Amazon S3 itself (S3_REGION picks the region); set for another S3-compatible store.
    S3_ENDPOINT_URL: str | None = Field(default=None, pattern=r"^https?://\S+$")
    S3_REGION: str | None = None
    # Unset (both): boto3's own chain (environment, shared files, the instance's role).
    S3_ACCESS_KEY_ID: str | None = None
    S3_SECRET_ACCESS_KEY: SecretStr | None = None
    # Put before every key, so one bucket can hold several deployments ("metricis/prod/").
    S3_PREFIX: str = Field(default="", max_length=200, pattern=r"^([A-Za-z0-9._-]+/)*$")
    # How long a download link to an export file is valid.
    S3_PRESIGN_SECONDS: int = Field(default=300, ge=10, le=3600)
    # Files larger than this are uploaded in parts of this size (S3's minimum part is 5 MiB).
    S3_MULTIPART_BYTES: int = Field(default=16 * 1024 * 1024, ge=5 * 1024 * 1024)

    # How outgoing mail leaves: `smtp` (the SMTP_* settings), `console` (printed on standard
    # output, sign-in links included) or `file` (one .eml file per message in EMAIL_FILE_DIR).
    # Unset: console in development, smtp otherwise. Production accepts smtp only.
    EMAIL_BACKEND: EmailBackend | None = None
    EMAIL_FILE_DIR: Path = Path("./data/mail")
    SMTP_HOST: str = "localhost"
    SMTP_PORT: int = Field(default=25, ge=1, le=65535)
    SMTP_USERNAME: str | None = None
    SMTP_PASSWORD: SecretStr | None = None
    SMTP_USE_TLS: bool = False
    SMTP_START_TLS: bool = False
    SMTP_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0)
    EMAIL_FROM: str = "Metricis <no-reply@localhost>"
    # Unset: this server on this machine, at the port it listens on (`_links_follow_the_port`).
    PUBLIC_BASE_URL: str = "http://127.0.0.1:8000"

    # How SMS leaves: `twilio` (a Twilio-compatible REST API), `console` (a redacted log line,
    # development) or `disabled`. Unset: console in development, disabled otherwise.
    SMS_BACKEND: SmsBackend | None = None
    SMS_API_BASE_URL: str = "https://api.twilio.com"
    SMS_ACCOUNT_SID: str | None = None
    SMS_AUTH_TOKEN: SecretStr | None = None
    # The sending number (E.164) the provider gives the account.
    SMS_FROM: str | None = None
    SMS_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0)

    # Notifications (docs/notifications.md). Beat asks the dispatcher this often for due rows;
    # scheduling one due now asks at once as well.
    NOTIFICATION_DISPATCH_INTERVAL_SECONDS: float = Field(default=60.0, ge=1)
    # Rows claimed per transaction: a worker killed mid-batch leaves at most this many whose
    # delivery is unknown.
    NOTIFICATION_BATCH_SIZE: int = Field(default=20, ge=1, le=500)
    # Messages of a batch in flight at once, each lane with an SMTP connection of its own
    # (kept for the whole run): sending is a chain of round trips, which lanes overlap.
    NOTIFICATION_SEND_CONCURRENCY: int = Field(default=4, ge=1, le=32)
    # Provider calls per notification when the provider certainly did not take the message
    # (connection refused, a 4xx reply); the wait doubles from the backoff up to its maximum.
    NOTIFICATION_MAX_ATTEMPTS: int = Field(default=5, ge=1, le=50)
    NOTIFICATION_RETRY_BACKOFF_SECONDS: float = Field(default=60.0, ge=0)
    NOTIFICATION_RETRY_BACKOFF_MAX_SECONDS: float = Field(default=3600.0, ge=0)
    # A row still `sending` this long after its claim belonged to a worker that died: it becomes
    # `failed` ("interrupted; delivery unknown") and is never sent again by itself. Longer than
    # WORKER_TASK_TIME_LIMIT_SECONDS, so no live task can still be sending it.
    NOTIFICATION_SENDING_TIMEOUT_SECONDS: float = Field(default=900.0, gt=0)
    # Local quiet hours in the participant's time zone: a message due inside them waits for
    # their end. Equal start and end: no quiet hours.
    NOTIFICATION_QUIET_HOURS_START: time = time(21, 0)
    NOTIFICATION_QUIET_HOURS_END: time = time(8, 0)

    # Visit reminders (docs/reminders.md). Beat runs the scan that turns the reminder rules of
    # visits into notifications this often; each run plans the reminders due within the
    # horizon, skips those later than the maximum lateness, and works through at most a batch
    # of visits per transaction.
    REMINDER_SCAN_SECONDS: float = Field(default=60.0, ge=1)
    REMINDER_SCAN_HORIZON_HOURS: float = Field(default=24.0, gt=0, le=24 * 30)
    REMINDER_MAX_LATENESS_HOURS: float = Field(default=6.0, ge=0, le=24 * 30)
    REMINDER_SCAN_BATCH_SIZE: int = Field(default=2000, ge=1, le=20000)
    # How long the sign-in link a reminder carries works (once), from the moment it is sent.
    REMINDER_LINK_EXPIRE_HOURS: float = Field(default=72.0, gt=0, le=24 * 30)

    @field_validator("ALLOWED_ORIGINS", "TRUSTED_PROXIES", "WEBHOOK_ALLOWED_HOSTS", mode="before")
    @classmethod
    def _split_lists(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("ENCRYPTION_KEYS", "AUDIT_CHAIN_KEYS", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("AUDIT_CHAIN_KEYS")
    @classmethod
    def _check_audit_chain_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        # The messages name keys by position and id only: a secret never reaches an error.
        seen: set[str] = set()
        for position, item in enumerate(value, start=1):
            key_id, secret = _parse_audit_chain_key(item.get_secret_value(), position)
            if key_id in seen:
                raise ValueError(f"AUDIT_CHAIN_KEYS names key '{key_id}' twice")
            seen.add(key_id)
            if len(secret) < AUDIT_CHAIN_KEY_MIN_BYTES:
                raise ValueError(
                    f"AUDIT_CHAIN_KEYS key '{key_id}' is shorter than "
                    f"{AUDIT_CHAIN_KEY_MIN_BYTES} bytes"
                )
        return value

    @property
    def migration_database_url(self) -> str:
        return self.MIGRATION_DATABASE_URL or self.DATABASE_URL

    @property
    def audit_chain_keys_derived(self) -> bool:
        return not self.AUDIT_CHAIN_KEYS

    @property
    def audit_chain_keys(self) -> list[tuple[str, bytes]]:
        """(id, secret) newest first; without AUDIT_CHAIN_KEYS, one key derived from
        SESSION_SECRET_KEY, so development works with nothing configured."""
        if self.audit_chain_keys_derived:
            derived = hmac.new(
                self.SESSION_SECRET_KEY.get_secret_value().encode(),
                b"metricis audit chain key (development only)",
                hashlib.sha256,
            ).digest()
            return [(DERIVED_AUDIT_CHAIN_KEY_ID, derived)]
        return [
            _parse_audit_chain_key(item.get_secret_value(), position)
            for position, item in enumerate(self.AUDIT_CHAIN_KEYS, start=1)
        ]

    @property
    def audit_checkpoint_dir(self) -> Path:
        return self.AUDIT_CHECKPOINT_DIR or self.STORAGE_DIR / "audit-checkpoints"

    @model_validator(mode="after")
    def _sending_timeout_outlasts_tasks(self) -> Self:
        if self.NOTIFICATION_SENDING_TIMEOUT_SECONDS <= self.WORKER_TASK_TIME_LIMIT_SECONDS:
            raise ValueError(
                "NOTIFICATION_SENDING_TIMEOUT_SECONDS must be longer than "
                "WORKER_TASK_TIME_LIMIT_SECONDS: a row still being sent by a live task would "
                "otherwise be reported as interrupted"
            )
        return self

    @model_validator(mode="after")
    def _links_follow_the_port(self) -> Settings:
        # Links in emails point at the server as it was started: `PORT=8100 make run` must not
        # send the demo's participants to port 8000.
        if "PUBLIC_BASE_URL" not in self.model_fields_set:
            self.PUBLIC_BASE_URL = f"http://127.0.0.1:{self.PORT}"
        return self

    @model_validator(mode="after")
    def _lease_outlasts_a_delivery(self) -> Settings:
        # A lease shorter than a delivery would let a second run claim it while the first one
        # still waits for the answer.
        if self.OUTBOX_LEASE_SECONDS <= self.WEBHOOK_TIMEOUT_SECONDS:
            raise ValueError("OUTBOX_LEASE_SECONDS must be longer than WEBHOOK_TIMEOUT_SECONDS")
        return self

    @model_validator(mode="after")
    def _object_storage_is_complete(self) -> Settings:
        if self.STORAGE_BACKEND is StorageBackend.S3 and not self.S3_BUCKET:
            raise ValueError("STORAGE_BACKEND=s3 needs S3_BUCKET: the bucket the files go to")
        if (self.S3_ACCESS_KEY_ID is None) != (self.S3_SECRET_ACCESS_KEY is None):
            raise ValueError("S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY are set together or not")
        if {".", ".."} & set(self.S3_PREFIX.split("/")):
            raise ValueError("S3_PREFIX must not hold '.' or '..' as a folder")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.DATABASE_URL.startswith("sqlite")

    @property
    def is_production(self) -> bool:
        return self.ENVIRONMENT is Environment.PRODUCTION

    @property
    def uses_redis(self) -> bool:
        return self.SESSION_STORAGE_BACKEND is SessionStorageBackend.REDIS

    @property
    def email_backend(self) -> EmailBackend:
        if self.EMAIL_BACKEND is not None:
            return self.EMAIL_BACKEND
        if self.ENVIRONMENT is Environment.DEVELOPMENT:
            return EmailBackend.CONSOLE
        return EmailBackend.SMTP

    @property
    def sms_backend(self) -> SmsBackend:
        if self.SMS_BACKEND is not None:
            return self.SMS_BACKEND
        if self.ENVIRONMENT is Environment.DEVELOPMENT:
            return SmsBackend.CONSOLE
        return SmsBackend.DISABLED

    @property
    def broker_url(self) -> str:
        if self.CELERY_BROKER_URL:
            return self.CELERY_BROKER_URL
        return self.REDIS_URL if self.uses_redis else EMBEDDED_BROKER_URL

    @property
    def uses_embedded_broker(self) -> bool:
        return self.broker_url == EMBEDDED_BROKER_URL

    @property
    def beat_stale_after_seconds(self) -> float:
        """Three missed ticks: one late tick is normal on a busy machine, three are not."""
        return 3 * self.BEAT_HEARTBEAT_SECONDS

    @property
    def embedded_broker_dir(self) -> Path:
        return self.STORAGE_DIR / "broker"

    @property
    def broker_transport_options(self) -> dict[str, Any]:
        if self.uses_embedded_broker:
            # One folder both ways: every process reads and writes the same queue files.
            queue_folder = str(self.embedded_broker_dir / "queue")
            return {
                "data_folder_in": queue_folder,
                "data_folder_out": queue_folder,
                "control_folder": str(self.embedded_broker_dir / "control"),
                "store_processed": False,
            }
        return {
            "socket_connect_timeout": self.REDIS_TIMEOUT_SECONDS,
            # Unacknowledged messages (acks_late) come back after this long if their worker died;
            # longer than the hard time limit, so a slow task is never run twice at once.
            "visibility_timeout": self.WORKER_TASK_TIME_LIMIT_SECONDS * 2,
        }

    def production_problems(self) -> list[str]:
        """What makes these settings unsafe for production; empty when they are fine."""
        problems: list[str] = []
        if self.JWT_SECRET_KEY.get_secret_value() == DEFAULT_JWT_SECRET:
            problems.append("JWT_SECRET_KEY is the development default")
        elif len(self.JWT_SECRET_KEY.get_secret_value()) < 32:
            problems.append("JWT_SECRET_KEY is shorter than 32 characters")
        if self.SESSION_SECRET_KEY.get_secret_value() == DEFAULT_SESSION_SECRET:
            problems.append("SESSION_SECRET_KEY is the development default")
        elif len(self.SESSION_SECRET_KEY.get_secret_value()) < 32:
            problems.append("SESSION_SECRET_KEY is shorter than 32 characters")
        if any(key.get_secret_value() == DEFAULT_ENCRYPTION_KEY for key in self.ENCRYPTION_KEYS):
            problems.append("ENCRYPTION_KEYS contains the development default key")
        if self.audit_chain_keys_derived:
            problems.append(
                "AUDIT_CHAIN_KEYS is not set; production keys the audit chain with a secret "
                "kept outside the database"
            )
        if self.is_sqlite:
            problems.append("DATABASE_URL points at SQLite; production needs PostgreSQL")
        if self.PASSWORD_HASH_MEMORY_KIB < 19456 or self.PASSWORD_HASH_TIME_COST < 2:
            problems.append("PASSWORD_HASH_* is below 19456 KiB of memory or 2 passes")
        if "*" in self.ALLOWED_ORIGINS:
            problems.append("ALLOWED_ORIGINS contains the wildcard '*'")
        if self.email_backend is not EmailBackend.SMTP:
            # Console and file backends put sign-in links and addresses where logs and disks
            # keep them.
            problems.append(f"EMAIL_BACKEND is {self.email_backend.value}; production needs smtp")
        if self.sms_backend is SmsBackend.CONSOLE:
            problems.append("SMS_BACKEND is console; production needs twilio or disabled")
        if self.sms_backend is SmsBackend.TWILIO and not (
            self.SMS_ACCOUNT_SID and self.SMS_AUTH_TOKEN and self.SMS_FROM
        ):
            problems.append(
                "SMS_BACKEND is twilio without SMS_ACCOUNT_SID, SMS_AUTH_TOKEN and SMS_FROM"
            )
        for key, provider in self.OIDC_PROVIDERS.items():
            if not provider.issuer.startswith("https://"):
                problems.append(f"OIDC_PROVIDERS['{key}'].issuer is not an https address")
        if self.S3_ENDPOINT_URL and not self.S3_ENDPOINT_URL.startswith("https://"):
            # Research data and signed download addresses would cross the network in clear.
            problems.append("S3_ENDPOINT_URL is not an https address")
        if self.uses_embedded_broker:
            problems.append(
                "background work would use the embedded broker; production needs Redis "
                "(CELERY_BROKER_URL, or SESSION_STORAGE_BACKEND=redis)"
            )
        return problems


class UnsafeProductionSettingsError(RuntimeError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "Refusing to start with ENVIRONMENT=production: " + "; ".join(problems) + "."
        )


def check_production_settings(settings: Settings) -> None:
    if settings.is_production:
        problems = settings.production_problems()
        if problems:
            raise UnsafeProductionSettingsError(problems)


@lru_cache
def get_settings() -> Settings:
    return Settings()
