"""One S2S attempt: send a rendered request over the shared session and judge the answer.

Never raises for a network or HTTP failure: every result is an `Attempt` carrying its outcome.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

import aiohttp
from yarl import URL

from clickloop.domain.deliveries import (
    RESPONSE_LIMIT,
    Attempt,
    ErrorKind,
    Rng,
    classify_response,
    decide_outcome,
)
from clickloop.domain.secrets import mask_secrets
from clickloop.sender.ssrf import AddressPolicy, AddressRefused, check_url

DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=15, sock_connect=5)
_USER_AGENT = "clickloop-s2s/1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """A rendered delivery, ready to send."""

    method: str
    url: str
    body: str | None = None
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # the target's, rendered
    must_contain: str | None = None


# What may stand in a URL as it is: reserved and unreserved characters, and existing escapes.
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~-._"
_NEEDS_ESCAPE = re.compile(r"[^A-Za-z0-9!#$%&'()*+,/:;=?@\[\]~._-]")


def escape_url(url: str) -> str:
    """Percent-encode what cannot appear in a URL (spaces, quotes, braces, non-ASCII) and nothing
    else: a raw macro (`{_keyword}`) may leave such characters, while the target must receive
    every escape the template already has exactly as written.
    """
    if not _NEEDS_ESCAPE.search(url):
        return url
    return quote(url, safe=_URL_SAFE, errors="replace")


def utc_now() -> datetime:
    return datetime.now(UTC)


async def send_attempt(
    session: aiohttp.ClientSession,
    request: Request,
    *,
    policy: AddressPolicy,
    attempts_made: int,
    rng: Rng,
    timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
    clock: Callable[[], datetime] = utc_now,
) -> Attempt:
    """Send attempt number `attempts_made` (1-based) of `request` and return its record.

    The session's connector must come from `ssrf.make_connector` for resolved names to be
    guarded; literal IP hosts are checked here.
    """
    started_at = clock()
    started = time.perf_counter()
    status_code: int | None = None
    headers: dict[str, str] = {}
    text: str | None = None
    error_kind: ErrorKind | None
    error: str | None = None
    try:
        url = URL(escape_url(request.url), encoded=True)
        if not url.absolute or url.scheme not in ("http", "https"):
            raise ValueError(f"not an http(s) URL: {request.url!r}")
        check_url(url, policy)
        status_code, headers, text = await _exchange(session, request, url, timeout)
        error_kind = classify_response(status_code, text, must_contain=request.must_contain)
        if error_kind is not None:
            error = f"HTTP {status_code}"
    except Exception as exc:  # every network failure becomes a logged attempt, not a raise
        error_kind = classify_exception(exc)
        error = mask_secrets(f"{type(exc).__name__}: {exc}")[:1000]
        if error_kind is None:
            raise
    latency_ms = round((time.perf_counter() - started) * 1000)
    outcome = decide_outcome(
        attempts_made=attempts_made,
        error_kind=error_kind,
        status_code=status_code,
        headers=headers,
        now=clock(),
        rng=rng,
    )
    return Attempt(
        started_at=started_at,
        url=mask_secrets(request.url),
        status_code=status_code,
        latency_ms=latency_ms,
        response=mask_secrets(text) if text is not None else None,
        error_kind=error_kind,
        error=error,
        outcome=outcome,
    )


async def _exchange(
    session: aiohttp.ClientSession, request: Request, url: URL, timeout: aiohttp.ClientTimeout
) -> tuple[int, dict[str, str], str]:
    req_headers = {"User-Agent": _USER_AGENT}
    if request.content_type:
        req_headers["Content-Type"] = request.content_type
    # The target's own headers win (a Content-Type or User-Agent it insists on); names are
    # matched without case, as HTTP does.
    for name, value in request.headers.items():
        for default in [key for key in req_headers if key.lower() == name.lower()]:
            del req_headers[default]
        req_headers[name] = value
    data = request.body.encode() if request.body is not None else None
    async with session.request(
        request.method,
        url,
        data=data,
        headers=req_headers,
        allow_redirects=False,
        timeout=timeout,
    ) as resp:
        body = await _read_limited(resp.content, RESPONSE_LIMIT)
        headers = (
            {"Retry-After": resp.headers["Retry-After"]} if "Retry-After" in resp.headers else {}
        )
        return resp.status, headers, body.decode("utf-8", errors="replace")


async def _read_limited(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """Read at most `limit` bytes: a target answering megabytes must not cost us megabytes."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def classify_exception(exc: BaseException) -> ErrorKind | None:
    """The error kind of a failed exchange; None for exceptions that are not network failures."""
    cause = getattr(exc, "os_error", None) or exc.__cause__
    if isinstance(exc, AddressRefused) or isinstance(cause, AddressRefused):
        return ErrorKind.SSRF
    if isinstance(exc, ValueError | aiohttp.InvalidURL):
        return ErrorKind.INVALID_URL
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ErrorKind.DNS
    if isinstance(exc, aiohttp.ClientSSLError):
        return ErrorKind.TLS
    if isinstance(exc, asyncio.TimeoutError):  # includes aiohttp's ServerTimeoutError
        return ErrorKind.TIMEOUT
    if isinstance(exc, aiohttp.ClientError | OSError):
        return ErrorKind.CONNECT
    return None
