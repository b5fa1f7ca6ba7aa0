"""Outbound address policy: which addresses an S2S request may reach."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from clickloop.sender.ssrf import (
    AddressPolicy,
    AddressRefused,
    GuardedResolver,
    check_url,
    is_public_address,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:4700::6810:84e5", True),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("127.0.0.1", False),
        ("127.8.9.10", False),
        ("0.0.0.0", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # CGNAT
        ("224.0.0.1", False),
        ("239.1.2.3", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("198.18.0.1", False),  # benchmarking
        ("192.0.2.1", False),  # documentation
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("fec0::1", False),  # deprecated site-local
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:93.184.215.14", True),
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("2002:5db8:d70e::", True),  # 6to4 of a public address
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("64:ff9b::5db8:d70e", True),  # NAT64 of a public address
        ("2001:db8::1", False),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    """Only globally routable unicast addresses count as public, embedded IPv4 included."""
    assert is_public_address(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    ("cidrs", "address", "permitted"),
    [
        ([], "127.0.0.1", False),
        (["127.0.0.0/8"], "127.0.0.1", True),
        (["127.0.0.0/8"], "::ffff:127.0.0.1", True),
        (["127.0.0.0/8"], "10.0.0.1", False),
        (["10.0.0.0/8", "::1/128"], "::1", True),
        (["10.0.0.0/8"], "93.184.215.14", True),
    ],
)
def test_policy_allows_configured_networks(cidrs: list[str], address: str, permitted: bool) -> None:
    """A non-public address passes only inside an allowed network; public ones always pass."""
    policy = AddressPolicy.from_cidrs(cidrs)
    assert policy.permits(ipaddress.ip_address(address)) is permitted


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("http://127.0.0.1:8080/p", True),
        ("http://[::1]/p", True),
        ("http://[::ffff:7f00:1]/p", True),
        ("http://169.254.169.254/latest/meta-data", True),
        ("http://93.184.215.14/p", False),
        ("http://localhost/p", False),  # a name: the resolver decides
    ],
)
def test_check_url_guards_literal_hosts(url: str, refused: bool) -> None:
    """Literal IP hosts never reach the resolver, so they are checked on the URL."""
    policy = AddressPolicy()
    if refused:
        with pytest.raises(AddressRefused):
            check_url(URL(url), policy)
    else:
        check_url(URL(url), policy)


class FakeResolver(AbstractResolver):
    """Answers every name with a fixed list of addresses."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self.addresses
        ]

    async def close(self) -> None:
        return None


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("addresses", "kept"),
    [
        (["93.184.215.14"], ["93.184.215.14"]),
        (["10.0.0.1", "93.184.215.14"], ["93.184.215.14"]),
        (["127.0.0.1", "127.0.0.2"], None),
        (["::ffff:192.168.0.1"], None),
    ],
)
async def test_guarded_resolver_drops_refused_addresses(
    addresses: list[str], kept: list[str] | None
) -> None:
    """A name keeps only its permitted addresses, and is refused when none is left."""
    resolver = GuardedResolver(AddressPolicy(), FakeResolver(addresses))
    if kept is None:
        with pytest.raises(AddressRefused):
            await resolver.resolve("evil.example", 80)
    else:
        results = await resolver.resolve("evil.example", 80)
        assert [r["host"] for r in results] == kept
