"""The caller's address, trusting X-Forwarded-For only from configured proxies."""

from __future__ import annotations

from collections.abc import Collection

from starlette.types import Scope


def client_ip(scope: Scope, trusted_proxies: Collection[str]) -> str:
    peer = scope.get("client")
    peer_host: str = peer[0] if peer else "unknown"
    if peer_host not in trusted_proxies:
        return peer_host
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-for":
            # The right-most address not added by one of our own proxies is the real client.
            forwarded: str = value.decode("latin-1")
            hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
            for hop in reversed(hops):
                if hop not in trusted_proxies:
                    return hop
            break
    return peer_host
