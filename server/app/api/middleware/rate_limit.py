"""Rate limits on the API, in memory or shared through Redis.

Three buckets: sign-in routes per client address (strict: they guess passwords and codes),
requests with a valid access token per principal (user or participant, so one NAT address does
not share a clinic's budget), and other anonymous requests per address.

Built on `limits` directly in a pure ASGI middleware rather than through slowapi's decorators:
see docs/adr/0002-rate-limiting.md. A limiter whose Redis is unreachable lets requests through
and logs it: refusing every participant's upload because the cache is down would lose data.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from enum import StrEnum

import jwt
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.client_ip import client_ip
from app.api.errors import error_response
from app.config import Settings
from app.core.logging import get_logger
from app.core.security import TokenType
from app.services.session_store import RedisSessionStore, SessionStore

logger = get_logger(__name__)

# The routes that take a secret (password, code, refresh token, link) from an anonymous caller.
SIGN_IN_PATHS = frozenset(
    {
        "/api/auth/login",
        "/api/auth/refresh",
        "/api/auth/2fa/verify",
        "/api/auth/participant",
        "/api/auth/magic-link",
        "/api/auth/magic-link/verify",
        "/api/auth/invitation",
        "/api/auth/invitation/accept",
        "/api/auth/password-reset",
        "/api/auth/password-reset/confirm",
    }
)
# Single sign-on: starting a sign-in and the provider's callback (a code and a state).
SSO_PREFIX = "/api/auth/sso/"
# Access tokens whose subject is a principal the limit can follow.
_PRINCIPAL_TOKEN_TYPES = {
    TokenType.ACCESS.value: "user",
    TokenType.PARTICIPANT_ACCESS.value: "participant",
}
# Health checks come from load balancers and monitors many times a minute.
EXEMPT_PREFIXES = ("/api/health",)


def is_rate_limited_path(path: str) -> bool:
    """Whether requests to this path count against a rate limit (OPTIONS never does)."""
    return path.startswith("/api") and not path.startswith(EXEMPT_PREFIXES)


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_epoch: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_epoch),
        }


class Bucket(StrEnum):
    SIGN_IN = "auth"
    PRINCIPAL = "principal"
    ANONYMOUS = "api"


class RateLimiter:
    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.storage = storage
        self.strategy = SlidingWindowCounterRateLimiter(storage)
        self.limits: dict[Bucket, RateLimitItem] = {
            Bucket.SIGN_IN: RateLimitItemPerMinute(settings.AUTH_RATE_LIMIT_PER_MINUTE),
            Bucket.PRINCIPAL: RateLimitItemPerMinute(settings.AUTHENTICATED_RATE_LIMIT_PER_MINUTE),
            Bucket.ANONYMOUS: RateLimitItemPerMinute(settings.RATE_LIMIT_PER_MINUTE),
        }
        self._jwt_key = settings.JWT_SECRET_KEY.get_secret_value()
        self._last_failure_logged = 0.0

    @classmethod
    def from_settings(cls, settings: Settings, session_store: SessionStore) -> RateLimiter:
        storage: Storage
        if isinstance(session_store, RedisSessionStore):
            storage = RedisStorage(
                "async+" + settings.REDIS_URL,
                implementation="redispy",
                key_prefix="metricis:ratelimit",
                wrap_exceptions=True,
                # limits types its options as scalars, but passes them to the redis client.
                connection_pool=session_store.connection_pool,  # type: ignore[arg-type]
            )
        else:
            storage = MemoryStorage()
        return cls(settings, storage)

    def principal_of(self, scope: Scope) -> str | None:
        """ "user:<id>" or "participant:<id>" for a validly signed, unexpired access token.

        The signature is checked so that a forged token cannot spread one caller over many
        buckets; whether the login session is still alive is the route's business.
        """
        authorization = Headers(scope=scope).get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            claims = jwt.decode(token, self._jwt_key, algorithms=["HS256"])
        except jwt.PyJWTError:
            return None
        kind = _PRINCIPAL_TOKEN_TYPES.get(claims.get("typ", ""))
        subject = claims.get("sub")
        if kind is None or not isinstance(subject, str):
            return None
        return f"{kind}:{subject}"

    def classify(self, scope: Scope, client_address: str) -> tuple[Bucket, str]:
        path: str = scope.get("path", "")
        if path.rstrip("/") in SIGN_IN_PATHS or path.startswith(SSO_PREFIX):
            return Bucket.SIGN_IN, client_address
        principal = self.principal_of(scope)
        if principal is not None:
            return Bucket.PRINCIPAL, principal
        return Bucket.ANONYMOUS, client_address

    async def hit(self, bucket: Bucket, key: str) -> RateLimitDecision | None:
        """Count one request; None when the limiter cannot decide (storage unreachable)."""
        item = self.limits[bucket]
        try:
            allowed = await self.strategy.hit(item, bucket.value, key)
            stats = await self.strategy.get_window_stats(item, bucket.value, key)
        except Exception as exc:
            now = time.monotonic()
            if now - self._last_failure_logged > 30:
                self._last_failure_logged = now
                logger.warning("rate_limit_storage_unavailable", error=repr(exc))
            return None
        return RateLimitDecision(
            allowed=allowed,
            limit=item.amount,
            remaining=max(0, stats.remaining),
            reset_epoch=math.ceil(stats.reset_time),
        )


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, limiter: RateLimiter, trusted_proxies: list[str]) -> None:
        self.app = app
        self.limiter = limiter
        self.trusted_proxies = frozenset(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != "http"
            or not is_rate_limited_path(path)
            or scope["method"] == "OPTIONS"
        ):
            await self.app(scope, receive, send)
            return
        bucket, key = self.limiter.classify(scope, client_ip(scope, self.trusted_proxies))
        decision = await self.limiter.hit(bucket, key)
        if decision is None:
            await self.app(scope, receive, send)
            return
        if not decision.allowed:
            retry_after = max(1, decision.reset_epoch - int(time.time()))
            response = error_response(
                429,
                "RATE_LIMITED",
                f"Too many requests; at most {decision.limit} per minute",
                {"limit_per_minute": decision.limit, "retry_after_seconds": retry_after},
                headers={**decision.headers(), "Retry-After": str(retry_after)},
            )
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in decision.headers().items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
