"""A small closed-loop HTTP load generator: N clients, each sending its next request when the
previous one is answered, bounded in requests and in time. Loopback targets only."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlparse

import httpx

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

RequestFactory = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


@dataclass
class LoadResult:
    name: str
    clients: int
    requests: int
    seconds: float
    latencies_ms: list[float] = field(repr=False)
    statuses: dict[int, int]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        index = min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))
        return ordered[index]

    def summary(self) -> str:
        mean = statistics.fmean(self.latencies_ms) if self.latencies_ms else float("nan")
        return (
            f"{self.name}: {self.requests} requests from {self.clients} clients in "
            f"{self.seconds:.1f} s = {self.throughput:.0f}/s; p50 {self.percentile(0.5):.1f} ms, "
            f"p99 {self.percentile(0.99):.1f} ms, mean {mean:.1f} ms; "
            f"statuses {dict(sorted(self.statuses.items()))}"
        )


def require_loopback(base_url: str) -> None:
    host = urlparse(base_url).hostname
    if host not in LOOPBACK_HOSTS:
        raise SystemExit(f"benchmarks only target this machine, not {host!r}")


async def run_load(
    name: str,
    base_url: str,
    make_request: RequestFactory,
    *,
    clients: int,
    max_requests: int,
    max_seconds: float,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    require_loopback(base_url)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    issued = 0
    deadline = time.perf_counter() + max_seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=30.0
    ) as client:

        async def worker() -> None:
            nonlocal issued
            while issued < max_requests and time.perf_counter() < deadline:
                sequence = issued
                issued += 1
                started = time.perf_counter()
                response = await make_request(client, sequence)
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return LoadResult(name, clients, len(latencies), elapsed, latencies, statuses)
