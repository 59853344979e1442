"""Per-client rate limits on the API, in memory or shared through Redis.

Built on `limits` directly in a pure ASGI middleware rather than through slowapi's decorators:
see docs/adr/0002-rate-limiting.md. A limiter whose Redis is unreachable lets requests through
and logs it: refusing every participant's upload because the cache is down would lose data.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.client_ip import client_ip
from app.api.errors import error_response
from app.config import Settings
from app.core.logging import get_logger
from app.services.session_store import RedisSessionStore, SessionStore

logger = get_logger(__name__)

AUTH_PREFIX = "/api/auth"
# Health checks come from load balancers and monitors many times a minute.
EXEMPT_PREFIXES = ("/api/health",)


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


class RateLimiter:
    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.storage = storage
        self.strategy = SlidingWindowCounterRateLimiter(storage)
        self.default_limit: RateLimitItem = RateLimitItemPerMinute(settings.RATE_LIMIT_PER_MINUTE)
        self.auth_limit: RateLimitItem = RateLimitItemPerMinute(settings.AUTH_RATE_LIMIT_PER_MINUTE)
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

    def limit_for(self, path: str) -> RateLimitItem:
        if path == AUTH_PREFIX or path.startswith(AUTH_PREFIX + "/"):
            return self.auth_limit
        return self.default_limit

    async def hit(self, path: str, client: str) -> RateLimitDecision | None:
        """Count one request; None when the limiter cannot decide (storage unreachable)."""
        item = self.limit_for(path)
        scope_key = "auth" if item is self.auth_limit else "api"
        try:
            allowed = await self.strategy.hit(item, scope_key, client)
            stats = await self.strategy.get_window_stats(item, scope_key, client)
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
            or not path.startswith("/api")
            or path.startswith(EXEMPT_PREFIXES)
            or scope["method"] == "OPTIONS"
        ):
            await self.app(scope, receive, send)
            return
        decision = await self.limiter.hit(path, client_ip(scope, self.trusted_proxies))
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
