"""Derived visitor fields: country from the IP (geoip2fast, data shipped in the package; a few
microseconds, so it is known when the offer URL is rendered), and OS, browser and device type
from the user agent (ua-parser; ~70 µs uncached, so computed in the writer thread, off the
request path). Both are cached.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from geoip2fast import GeoIP2Fast
from ua_parser import parse

_TABLET_HINTS = ("ipad", "tablet", "kindle", "silk", "playbook", "sm-t", "nexus 7", "nexus 10")
_DESKTOP_OS = frozenset(
    {"Windows", "Mac OS X", "Linux", "Ubuntu", "Chrome OS", "Fedora", "FreeBSD"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class UserAgentInfo:
    os: str | None
    browser: str | None
    device_type: str | None  # desktop | mobile | tablet | bot


@lru_cache(maxsize=1)
def _geoip() -> Any:
    return GeoIP2Fast()


@lru_cache(maxsize=65536)
def country_of(ip: str) -> str | None:
    """ISO country code of a public address, None for private, reserved or garbage."""
    if not ip:
        return None
    try:
        code = _geoip().lookup(ip).country_code
    except Exception:  # geoip2fast raises assorted errors on malformed input; none matters here
        return None
    return code if isinstance(code, str) and len(code) == 2 and code.isalpha() else None


@lru_cache(maxsize=65536)
def describe_user_agent(user_agent: str) -> UserAgentInfo:
    if not user_agent:
        return UserAgentInfo(os=None, browser=None, device_type=None)
    result = parse(user_agent[:1000])
    os = result.os.family if result.os else None
    browser = result.user_agent.family if result.user_agent else None
    device = result.device.family if result.device else ""
    return UserAgentInfo(
        os=_known(os), browser=_known(browser), device_type=_device_type(user_agent, os, device)
    )


def _known(family: str | None) -> str | None:
    return None if family in (None, "Other") else (family or "")[:64]


def _device_type(user_agent: str, os: str | None, device: str) -> str | None:
    lowered = user_agent.lower()
    if device == "Spider" or "bot" in lowered or "crawler" in lowered:
        return "bot"
    if any(hint in lowered for hint in _TABLET_HINTS) or (
        os == "Android" and "mobile" not in lowered
    ):
        return "tablet"
    if os in _DESKTOP_OS:
        return "desktop"
    if os is not None and os != "Other":
        return "mobile"
    return None


def warm_up() -> None:
    """Load the GeoIP data and compile the user-agent rules (~65 ms each) at start, so that the
    first clicks after a restart do not wait for them."""
    country_of("1.1.1.1")
    describe_user_agent("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0")


def enrich_click(row: dict[str, Any]) -> None:
    """Fill a click row's derived fields in place: user-agent fields, the referrer's domain and
    the visitor (the country is known at redirect time)."""
    user_agent = row.get("user_agent") or ""
    info = describe_user_agent(user_agent)
    row["os"], row["browser"], row["device_type"] = info.os, info.browser, info.device_type
    row["referrer_domain"] = referrer_domain(row.get("referrer"))
    row["visitor"] = visitor_of(row.get("ip") or "", user_agent)


def visitor_of(ip: str, user_agent: str) -> int:
    """A visitor: the same IP and user agent (docs/reports.md, "Unique clicks"), as a 63-bit
    hash that an index holds cheaply."""
    digest = hashlib.blake2b(f"{ip}\n{user_agent}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


@lru_cache(maxsize=4096)
def referrer_domain(referrer: str | None) -> str | None:
    """The referrer's host, lower case, without a leading "www." (None when there is none)."""
    if not referrer:
        return None
    try:
        host = urlsplit(referrer).hostname
    except ValueError:
        return None
    if not host:
        return None
    return host.removeprefix("www.")[:255]
