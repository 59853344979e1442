"""Where a webhook may point (docs/webhooks.md, safe targets).

A webhook is a request the server makes to an address somebody typed, so it must not become a
way into the server's own network: a URL whose host resolves to a loopback, private, link-local,
shared, multicast, reserved or otherwise non-public address is refused, for every address the
name resolves to (IPv4 and IPv6, including IPv4 hidden in IPv6 forms). WEBHOOK_ALLOWED_HOSTS
names the exceptions, by host name or by address or network. Cloud metadata addresses are refused
even then. The check runs when a webhook is saved and again before every delivery, and the
delivery connects to the very address that was checked, so a name that changes its answer in
between (DNS rebinding) gains nothing. Production accepts https only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import httpx

from app.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Instance metadata services of the usual clouds: refused even when allow-listed.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(address)
    for address in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
RESOLVE_TIMEOUT_SECONDS = 5.0


class TargetRefusedError(Exception):
    """The URL may not be called; the message says why, without any resolved address."""


@dataclass(frozen=True, slots=True)
class AllowList:
    hosts: frozenset[str]
    networks: tuple[IPNetwork, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> AllowList:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in settings.WEBHOOK_ALLOWED_HOSTS:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                hosts.add(entry.strip().lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def names(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def covers(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


@dataclass(frozen=True, slots=True)
class ResolvedTarget:
    url: httpx.URL
    host: str  # as the URL names it (IDNA-encoded), for the Host header and TLS
    addresses: tuple[IPAddress, ...]  # checked, in the resolver's order


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address leads to: mapped, 6to4, Teredo and NAT64 forms."""
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address.teredo is not None:
        found.append(address.teredo[1])
    if address in NAT64_PREFIX:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return False
        if any(not is_public(embedded) for embedded in _embedded_ipv4(address)):
            return False
    return address.is_global and not address.is_multicast and address not in METADATA_ADDRESSES


def _allowed(address: IPAddress, host: str, allow: AllowList) -> bool:
    if address in METADATA_ADDRESSES:
        return False
    return is_public(address) or allow.names(host) or allow.covers(address)


def parse_url(url: str, *, require_https: bool) -> httpx.URL:
    """The URL if its form is acceptable (http or https, a host); TargetRefusedError else."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise TargetRefusedError("The URL is not valid") from exc
    if parsed.scheme not in ("http", "https"):
        raise TargetRefusedError("The URL must start with https:// (or http:// outside production)")
    if require_https and parsed.scheme != "https":
        raise TargetRefusedError("Webhook URLs must use https")
    if not parsed.host:
        raise TargetRefusedError("The URL has no host")
    return parsed


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_SECONDS
        )
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise TargetRefusedError("The URL's host name cannot be resolved") from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonical, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]))
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TargetRefusedError("The URL's host name cannot be resolved")
    return addresses


async def resolve_target(url: str, settings: Settings) -> ResolvedTarget:
    """The URL with every address its host resolves to, once each is known to be allowed."""
    parsed = parse_url(url, require_https=settings.is_production)
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = await _resolve(host, port)
    allow = AllowList.from_settings(settings)
    if not all(_allowed(address, host, allow) for address in addresses):
        raise TargetRefusedError(
            "The URL points to an address that is not public (loopback, private, link-local,"
            " metadata or reserved); only addresses named in WEBHOOK_ALLOWED_HOSTS are exempt"
        )
    return ResolvedTarget(url=parsed, host=host, addresses=tuple(addresses))


def pinned_url(target: ResolvedTarget, address: IPAddress) -> httpx.URL:
    """The URL with its host replaced by one checked address: the connection goes there."""
    return target.url.copy_with(host=str(address))


def host_header(target: ResolvedTarget) -> str:
    port = target.url.port
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{host}:{port}" if port is not None else host


def redacted_url(url: str) -> str:
    """The URL as logs and the audit trail keep it: without credentials or query values."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return "(invalid URL)"
    shown = parsed.copy_with(username=None, password=None, fragment=None)
    if parsed.query:
        shown = shown.copy_with(query=b"redacted")
    return str(shown)
