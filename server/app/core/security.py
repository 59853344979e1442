"""Password hashing, JWTs and encryption at rest: the only place that touches key material."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import jwt
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from jwt.types import Options
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


_REQUIRED_CLAIMS: Options = {"require": ["sub", "typ", "jti", "iat", "exp"], "verify_exp": False}


@functools.lru_cache(maxsize=4096)
def _verified_claims(secret: str, token: str) -> Mapping[str, Any]:
    """The claims of `token` once its signature, algorithm, required claims, `iat` and `nbf`
    hold: all of these stay true of a token once they are, so each token is verified once per
    process rather than on every request (8 % of `GET /api/auth/me` went here).
    Expiry changes with time and is checked by `decode_token` on every use. A refusal raises,
    and lru_cache keeps no exceptions: a bad token is verified again each time it is sent."""
    claims: dict[str, Any] = jwt.decode(
        token, secret, algorithms=["HS256"], options=_REQUIRED_CLAIMS
    )
    return MappingProxyType(claims)


def decode_token(
    settings: Settings, token: str, expected_type: TokenType | frozenset[TokenType]
) -> dict[str, Any]:
    """Verify signature, expiry and type (one, or any of a set). HS256 only: `alg: none` and
    others are refused."""
    expected = expected_type if isinstance(expected_type, frozenset) else {expected_type}
    try:
        verified = _verified_claims(settings.JWT_SECRET_KEY.get_secret_value(), token)
    except jwt.PyJWTError as exc:
        raise InvalidTokenError(type(exc).__name__) from exc
    expires = verified["exp"]
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        raise InvalidTokenError("DecodeError")
    # As PyJWT without leeway: a token is expired from the second its `exp` names.
    if expires <= time.time():
        raise InvalidTokenError("ExpiredSignatureError")
    if verified.get("typ") not in expected:
        raise InvalidTokenError("wrong token type")
    if not isinstance(verified.get("sub"), str):
        raise InvalidTokenError("subject is not a string")
    return dict(verified)


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
