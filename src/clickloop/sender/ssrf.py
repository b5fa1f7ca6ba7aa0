"""Outbound address policy: S2S requests never reach private, loopback or other non-public
addresses unless the settings allow that network. Names are checked after resolution (the
resolver hook), literal IP hosts before the request (aiohttp does not resolve those).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# IPv6 ranges that embed an IPv4 address: the embedded one must be public too.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class AddressRefused(OSError):
    """The target resolves only to addresses the outbound policy refuses.

    An OSError so that aiohttp carries it through as the cause of its connector error.
    """

    def __init__(self, host: str, addresses: Iterable[str]) -> None:
        listed = ", ".join(addresses)
        super().__init__(f"refused non-public address for {host}: {listed}")
        self.host = host


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressPolicy:
    """Public addresses pass; a non-public one only inside an allowed network."""

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> AddressPolicy:
        return cls(allowed=tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs))

    def permits(self, address: IPAddress) -> bool:
        if any(address in net for net in self.allowed if net.version == address.version):
            return True
        mapped = _embedded_ipv4(address)
        if mapped is not None and any(mapped in net for net in self.allowed if net.version == 4):
            return True
        return is_public_address(address)


def is_public_address(address: IPAddress) -> bool:
    """Whether an address is globally routable unicast (and so fine to send a postback to)."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return is_public_address(embedded)
    if (
        not address.is_global
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address.is_link_local
    ):
        return False
    return not (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def parse_ip(host: str) -> IPAddress | None:
    """The address when `host` is an IP literal (IPv6 with or without brackets), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]").partition("%")[0])
    except ValueError:
        return None


def check_url(url: URL, policy: AddressPolicy) -> None:
    """Refuse a URL whose host is a literal non-public IP; names are left to the resolver."""
    host = url.raw_host
    if host is None:
        return
    address = parse_ip(host)
    if address is not None and not policy.permits(address):
        raise AddressRefused(host, [str(address)])


class GuardedResolver(AbstractResolver):
    """Resolves through `inner` and keeps only the addresses `policy` permits.

    `policy` may be replaced while running (the settings changed); cached answers were
    filtered with the policy of their time and age out with the connector's DNS cache.
    """

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner if inner is not None else ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        permitted = [r for r in results if self._permits(r["host"])]
        if not permitted:
            raise AddressRefused(host, [r["host"] for r in results])
        return permitted

    def _permits(self, host: str) -> bool:
        address = parse_ip(host)
        return address is not None and self.policy.permits(address)

    async def close(self) -> None:
        await self._inner.close()


def make_connector(
    resolver: GuardedResolver, *, limit: int = 0, limit_per_host: int = 0
) -> aiohttp.TCPConnector:
    """A connector whose name resolution is guarded; call inside the running event loop.

    Limits default to none: the dispatcher enforces its own global and per-host limits, so a
    request never waits for a pool slot inside its own timeout.
    """
    return aiohttp.TCPConnector(
        resolver=resolver, limit=limit, limit_per_host=limit_per_host, ttl_dns_cache=60
    )
