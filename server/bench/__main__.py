"""`make bench`: request-path benchmarks against a real server on 127.0.0.1.

    python -m bench [--database-url URL] [--clients 16] [--seconds 10] [--workers 2]

Scenarios: `health` (the middleware stack alone), `me` (a token checked on every request,
with the login session cached in the session store). Each runs for a bounded number of
requests and seconds and prints throughput and latency percentiles. Run it three times and
report the spread: figures on a shared 2-core machine move by 10 % or more.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import uuid

import httpx

from bench.load import run_load
from bench.server import running_server

ADMIN_PASSWORD = "Quartz-Harbor-Lattice-91!"  # noqa: S105 - a throwaway local database


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--redis-url", default=None, help="use Redis as the session store")
    return parser.parse_args()


async def scenarios(base_url: str, email: str, args: argparse.Namespace) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        login = await client.post(
            "/api/auth/login", json={"email": email, "password": ADMIN_PASSWORD}
        )
        login.raise_for_status()
        bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}

    health = await run_load(
        "GET /api/health",
        base_url,
        lambda client, _: client.get("/api/health"),
        clients=args.clients,
        max_requests=args.max_requests,
        max_seconds=args.seconds,
    )
    print(health.summary())
    me = await run_load(
        "GET /api/auth/me (token + login session check)",
        base_url,
        lambda client, _: client.get("/api/auth/me"),
        clients=args.clients,
        max_requests=args.max_requests,
        max_seconds=args.seconds,
        headers=bearer,
    )
    print(me.summary())


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        env = {
            "DATABASE_URL": args.database_url or f"sqlite+aiosqlite:///{scratch}/bench.db",
            "STORAGE_DIR": f"{scratch}/storage",
            "RATE_LIMIT_ENABLED": "false",
            "ENVIRONMENT": "development",
        }
        if args.redis_url:
            env.update({"SESSION_STORAGE_BACKEND": "redis", "REDIS_URL": args.redis_url})
        email = f"bench-{uuid.uuid4().hex[:8]}@example.org"
        with running_server(env, workers=args.workers, admin=(email, ADMIN_PASSWORD)) as base_url:
            asyncio.run(scenarios(base_url, email, args))


if __name__ == "__main__":
    main()
