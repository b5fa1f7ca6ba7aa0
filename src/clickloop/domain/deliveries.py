"""S2S delivery rules: the retry schedule and how a response is judged (masking: domain/secrets.py).

Pure: the clock (`now`) and randomness (`rng`) are arguments, so every rule is table-testable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Protocol
from urllib.parse import urlsplit

# Delay before retry n (n = 1 is the retry after the first attempt): ≈ 27 h in all, 9 attempts.
RETRY_DELAYS: tuple[timedelta, ...] = (
    timedelta(0),
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
JITTER = 0.2
# A target may ask us to wait (429/503 Retry-After), but not longer than this per attempt:
# a misconfigured "Retry-After: 999999" must not park a conversion for weeks.
RETRY_AFTER_MAX = timedelta(hours=1)
RESPONSE_LIMIT = 4096

# Why a refused (non-public) address is retried: allowing its network is a configuration change
# that lifts the refusal, so it stays on the retry ladder under this reason.
REFUSED_REASON = "ssrf: address refused (not in allowed_networks)"

# 4xx answers that say "later", not "never".
_RETRYABLE_CLIENT_STATUSES = frozenset({408, 425, 429})
_RETRY_AFTER_STATUSES = frozenset({429, 503})


class ErrorKind(StrEnum):
    """Why an attempt failed; stored on the attempt row and shown in the sent-postback log."""

    DNS = "dns"
    CONNECT = "connect"
    TLS = "tls"
    TIMEOUT = "timeout"
    HTTP_STATUS = "http_status"
    BODY_CHECK = "body_check"
    SSRF = "ssrf"
    INVALID_URL = "invalid_url"


class DeliveryState(StrEnum):
    QUEUED = "queued"
    DELIVERED = "delivered"
    FAILED = "failed"
    DISABLED = "disabled"
    SUPERSEDED = "superseded"  # rendered again into another delivery; never sent again


class TargetKind(StrEnum):
    TRAFFIC_SOURCE = "traffic_source"
    CAMPAIGN_POSTBACK = "campaign_postback"


class Rng(Protocol):
    def uniform(self, a: float, b: float, /) -> float: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivered:
    """The target accepted the request."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry:
    """Try again at `at`."""

    at: datetime
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GiveUp:
    """Stop trying: the failure is permanent or the schedule is exhausted."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DisableTarget:
    """The target is gone (410): stop this delivery and disable the target."""

    reason: str


Outcome = Delivered | Retry | GiveUp | DisableTarget


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One request sent (or refused before sending), as the sent-postback log records it."""

    started_at: datetime
    url: str  # secrets masked
    status_code: int | None
    latency_ms: int
    response: str | None  # first RESPONSE_LIMIT bytes, decoded, secrets masked
    error_kind: ErrorKind | None
    error: str | None
    outcome: Outcome


def compute_retry_at(
    attempts_made: int,
    *,
    now: datetime,
    rng: Rng,
    retry_after: timedelta | None = None,
) -> datetime | None:
    """When to retry after `attempts_made` failed attempts, or None once the schedule is spent.

    The scheduled delay gets ±20% jitter so that retries of one outage do not stampede; a
    Retry-After is a lower bound, capped at RETRY_AFTER_MAX.
    """
    if attempts_made < 1:
        raise ValueError("attempts_made starts at 1")
    if attempts_made > len(RETRY_DELAYS):
        return None
    delay = RETRY_DELAYS[attempts_made - 1] * (1 + rng.uniform(-JITTER, JITTER))
    if retry_after is not None:
        delay = max(delay, min(max(retry_after, timedelta(0)), RETRY_AFTER_MAX))
    return now + delay


def parse_retry_after(value: str | None, *, now: datetime) -> timedelta | None:
    """Read a Retry-After header (delta-seconds or HTTP-date); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        # Past the cap the exact figure does not matter, and a huge one would overflow timedelta.
        return timedelta(seconds=int(value)) if len(value) <= 9 else RETRY_AFTER_MAX
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(when - now, timedelta(0))


def host_key(url: str) -> str:
    """`host:port` of a URL, lower-case, the unit of per-host limits ("" when unparsable)."""
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower(), 0)
    except ValueError:
        return ""
    return f"{(parts.hostname or '')}:{port}"[:300]


def classify_response(status: int, body: str, *, must_contain: str | None) -> ErrorKind | None:
    """None when the answer means "accepted": a 2xx, containing `must_contain` if one is set."""
    if not 200 <= status < 300:
        return ErrorKind.HTTP_STATUS
    if must_contain and must_contain not in body:
        return ErrorKind.BODY_CHECK
    return None


def decide_outcome(
    *,
    attempts_made: int,
    error_kind: ErrorKind | None,
    status_code: int | None,
    headers: Mapping[str, str] | None = None,
    now: datetime,
    rng: Rng,
) -> Outcome:
    """Turn the result of attempt number `attempts_made` into what happens next."""
    if error_kind is None:
        return Delivered()
    reason = _describe_failure(error_kind, status_code)
    if error_kind is ErrorKind.INVALID_URL:
        return GiveUp(reason=reason)
    retry_after = None
    if status_code is not None and error_kind is ErrorKind.HTTP_STATUS:
        if status_code == 410:
            return DisableTarget(reason=reason)
        if 400 <= status_code < 500 and status_code not in _RETRYABLE_CLIENT_STATUSES:
            return GiveUp(reason=reason)
        if status_code in _RETRY_AFTER_STATUSES and headers is not None:
            retry_after = parse_retry_after(headers.get("Retry-After"), now=now)
    at = compute_retry_at(attempts_made, now=now, rng=rng, retry_after=retry_after)
    if at is None:
        return GiveUp(reason=f"{reason}; gave up after {attempts_made} attempts")
    return Retry(at=at, reason=reason)


def _describe_failure(error_kind: ErrorKind, status_code: int | None) -> str:
    if error_kind is ErrorKind.SSRF:
        return REFUSED_REASON
    if status_code is not None and error_kind in (ErrorKind.HTTP_STATUS, ErrorKind.BODY_CHECK):
        return f"{error_kind}: HTTP {status_code}"
    return str(error_kind)
