"""The HMAC keys of the audit chain, from AUDIT_CHAIN_KEYS: the first signs, all verify."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.config import Environment, Settings
from app.core.logging import get_logger

logger = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ChainKey:
    key_id: str
    secret: bytes = field(repr=False)

    def mac(self, message: bytes) -> str:
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()


class ChainKeyring:
    """Keys by id. Rotating prepends a new key: links keep the id of the key that made them, so
    the old key stays listed for as long as its links must verify."""

    def __init__(self, keys: Sequence[ChainKey]) -> None:
        if not keys:
            raise ValueError("an audit chain keyring needs at least one key")
        self._keys = {key.key_id: key for key in keys}
        if len(self._keys) != len(keys):
            raise ValueError("audit chain key ids must be unique")
        self.current = keys[0]

    @classmethod
    def from_settings(cls, settings: Settings) -> ChainKeyring:
        return cls([ChainKey(key_id, secret) for key_id, secret in settings.audit_chain_keys])

    def get(self, key_id: str) -> ChainKey | None:
        return self._keys.get(key_id)

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)


def warn_if_derived(settings: Settings) -> None:
    """Say loudly, once per process, that the chain is keyed with the development key."""
    if settings.audit_chain_keys_derived and settings.ENVIRONMENT is Environment.DEVELOPMENT:
        logger.warning(
            "audit_chain_development_key",
            detail=(
                "AUDIT_CHAIN_KEYS is not set: the audit chain is keyed with a development key "
                "derived from SESSION_SECRET_KEY, which the database owner may know. "
                "Production refuses to start without AUDIT_CHAIN_KEYS."
            ),
        )
