"""Password hashing, JWTs and encryption at rest: the only place that touches key material."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import jwt
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from app.config import Settings
from app.core.clock import utcnow

# Argon2id; parameters come from settings (defaults: argon2-cffi's RFC 9106 low-memory profile).
# When they change, hashes made with the old ones are upgraded at the next successful login
# (verify_and_update).
_hasher = PasswordHash((Argon2Hasher(),))
# Verified against when the account does not exist, so both paths cost one Argon2 run. Made on
# first use with the configured parameters: hashing at import would slow every process start.
_dummy_hash: str | None = None


def configure_password_hashing(settings: Settings) -> None:
    """Apply the Argon2 parameters of these settings (called by create_app)."""
    global _hasher, _dummy_hash
    _dummy_hash = None
    _hasher = PasswordHash(
        (
            Argon2Hasher(
                time_cost=settings.PASSWORD_HASH_TIME_COST,
                memory_cost=settings.PASSWORD_HASH_MEMORY_KIB,
                parallelism=settings.PASSWORD_HASH_PARALLELISM,
            ),
        )
    )


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password: str, password_hash: str | None) -> tuple[bool, str | None]:
    """(valid, new hash when the stored one used outdated parameters). Runs off the event loop."""
    if password_hash is None:
        await asyncio.to_thread(_verify_against_dummy, password)
        return False, None
    try:
        return await asyncio.to_thread(_hasher.verify_and_update, password, password_hash)
    except Exception:  # a corrupt stored hash is a failed login, not a 500
        return False, None


def _verify_against_dummy(password: str) -> None:
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash(secrets.token_urlsafe(16))
    _hasher.verify(password, _dummy_hash)


class TokenType(StrEnum):
    ACCESS = "access"
    REFRESH = "refresh"
    MFA = "mfa"
    INVITATION = "invitation"
    PARTICIPANT_ACCESS = "participant_access"
    PARTICIPANT_REFRESH = "participant_refresh"


class InvalidTokenError(Exception):
    """Any reason a token is not accepted; the reason is logged, never returned."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: datetime


def create_token(
    settings: Settings,
    *,
    subject: str,
    token_type: TokenType,
    lifetime: timedelta,
    session_id: uuid.UUID | None = None,
    extra_claims: dict[str, Any] | None = None,
) -> IssuedToken:
    now = utcnow()
    jti = uuid.uuid4().hex
    expires_at = now + lifetime
    claims: dict[str, Any] = {
        "sub": subject,
        "typ": token_type.value,
        "jti": jti,
        "iat": int(now.timestamp()),
        "exp": int(expires_at.timestamp()),
    }
    if session_id is not None:
        claims["sid"] = str(session_id)
    if extra_claims:
        claims.update(extra_claims)
    token = jwt.encode(claims, settings.JWT_SECRET_KEY.get_secret_value(), algorithm="HS256")
    return IssuedToken(token=token, jti=jti, expires_at=expires_at)


def decode_token(
    settings: Settings, token: str, expected_type: TokenType | frozenset[TokenType]
) -> dict[str, Any]:
    """Verify signature, expiry and type (one, or any of a set). HS256 only: `alg: none` and
    others are refused."""
    expected = expected_type if isinstance(expected_type, frozenset) else {expected_type}
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            settings.JWT_SECRET_KEY.get_secret_value(),
            algorithms=["HS256"],
            options={"require": ["sub", "typ", "jti", "iat", "exp"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidTokenError(type(exc).__name__) from exc
    if claims.get("typ") not in expected:
        raise InvalidTokenError("wrong token type")
    if not isinstance(claims.get("sub"), str):
        raise InvalidTokenError("subject is not a string")
    return claims


class FieldEncryptor:
    """Fernet encryption for values at rest. The first key encrypts; all keys decrypt."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    @classmethod
    def from_settings(cls, settings: Settings) -> FieldEncryptor:
        return cls([key.get_secret_value() for key in settings.ENCRYPTION_KEYS])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("value cannot be decrypted with the configured keys") from exc

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypt with the newest key."""
        return self._fernet.rotate(ciphertext.encode()).decode()


def hash_secret(settings: Settings, value: str) -> str:
    """Keyed hash for one-time codes and blind indexes: lookups without storing the value."""
    key = settings.SESSION_SECRET_KEY.get_secret_value().encode()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def generate_secret_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)
