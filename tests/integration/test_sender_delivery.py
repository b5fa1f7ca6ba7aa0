"""Single S2S attempts against a real local aiohttp server acting as a traffic source."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web

from clickloop.domain.deliveries import (
    Attempt,
    Delivered,
    DisableTarget,
    ErrorKind,
    GiveUp,
    Retry,
)
from clickloop.sender.delivery import Request, send_attempt
from clickloop.sender.ssrf import AddressPolicy, GuardedResolver, make_connector

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
LOOPBACK = AddressPolicy.from_cidrs(["127.0.0.0/8"])


class MidRng:
    """No jitter: uniform() returns the middle of its range."""

    def uniform(self, a: float, b: float, /) -> float:
        return (a + b) / 2


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Target:
    """A local HTTP server that records what it receives and misbehaves on request."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.bodies: list[tuple[str, str | None, bytes]] = []
        self.port = 0
        self.never = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] += 1
        self.bodies.append((request.path_qs, request.content_type, await request.read()))
        if path == "/flaky":
            return web.Response(status=500 if self.hits[path] <= 3 else 200, text="x")
        if path == "/hang":
            await self.never.wait()
        if path == "/gone":
            return web.Response(status=410)
        if path == "/limited":
            return web.Response(status=429, headers={"Retry-After": "30"})
        if path == "/redirect":
            raise web.HTTPFound(f"http://127.0.0.1:{self.port}/ok")
        if path == "/exo":
            return web.Response(text="ERROR: invalid click id")
        if path == "/big":
            return web.Response(body=b"a" * 1_000_000)
        return web.Response(text="OK")


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    t = Target()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", t.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    t.port = runner.addresses[0][1]
    yield t
    t.never.set()
    await runner.cleanup()


async def attempt(
    request: Request,
    *,
    policy: AddressPolicy = LOOPBACK,
    attempts_made: int = 1,
    timeout: aiohttp.ClientTimeout | None = None,
) -> Attempt:
    async with aiohttp.ClientSession(connector=make_connector(GuardedResolver(policy))) as session:
        kwargs = {"timeout": timeout} if timeout else {}
        return await send_attempt(
            session,
            request,
            policy=policy,
            attempts_made=attempts_made,
            rng=MidRng(),
            clock=lambda: NOW,
            **kwargs,
        )


def get(target: Target, path: str, **kw: str) -> Request:
    return Request(method="GET", url=f"http://127.0.0.1:{target.port}{path}", **kw)


@pytest.mark.anyio
async def test_three_500s_then_200_is_delivered_on_the_fourth_attempt(target: Target) -> None:
    """A target answering 500 three times is retried on schedule and accepts the fourth try."""
    outcomes = [
        (await attempt(get(target, "/flaky"), attempts_made=n)).outcome for n in range(1, 5)
    ]
    assert outcomes == [
        Retry(at=NOW, reason="http_status: HTTP 500"),
        Retry(at=NOW + timedelta(seconds=5), reason="http_status: HTTP 500"),
        Retry(at=NOW + timedelta(minutes=5), reason="http_status: HTTP 500"),
        Delivered(),
    ]
    assert target.hits["/flaky"] == 4


@pytest.mark.anyio
async def test_hung_target_times_out(target: Target) -> None:
    """A target that accepts and never answers ends in a timeout attempt, retried later."""
    result = await attempt(get(target, "/hang"), timeout=aiohttp.ClientTimeout(total=0.3))
    assert result.error_kind is ErrorKind.TIMEOUT
    assert result.status_code is None
    assert isinstance(result.outcome, Retry)


@pytest.mark.anyio
async def test_410_disables_the_target(target: Target) -> None:
    """410 Gone asks for the target to be disabled."""
    result = await attempt(get(target, "/gone"))
    assert result.status_code == 410
    assert result.outcome == DisableTarget(reason="http_status: HTTP 410")


@pytest.mark.anyio
async def test_429_retry_after_is_honoured(target: Target) -> None:
    """A 429 with Retry-After: 30 is retried no sooner than 30 s later."""
    result = await attempt(get(target, "/limited"))
    assert result.outcome == Retry(at=NOW + timedelta(seconds=30), reason="http_status: HTTP 429")


@pytest.mark.anyio
async def test_redirects_are_not_followed(target: Target) -> None:
    """A 302 is a failed attempt and its Location is never requested."""
    result = await attempt(get(target, "/redirect"))
    assert result.status_code == 302
    assert result.error_kind is ErrorKind.HTTP_STATUS
    assert target.hits["/ok"] == 0


@pytest.mark.parametrize(
    ("path", "must_contain", "kind"),
    [("/exo", "OK", ErrorKind.BODY_CHECK), ("/ok", "OK", None), ("/exo", None, None)],
)
@pytest.mark.anyio
async def test_response_must_contain(
    target: Target, path: str, must_contain: str | None, kind: ErrorKind | None
) -> None:
    """A 200 counts as delivered only when it contains the configured text."""
    result = await attempt(
        get(target, path, must_contain=must_contain) if must_contain else get(target, path)
    )
    assert result.error_kind is kind
    assert result.status_code == 200


@pytest.mark.anyio
async def test_response_is_truncated_to_4_kib(target: Target) -> None:
    """Only the first 4 KiB of a large answer are kept."""
    result = await attempt(get(target, "/big"))
    assert result.response == "a" * 4096
    assert result.outcome == Delivered()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/ok",
        "http://localhost:{port}/ok",
        "http://[::ffff:127.0.0.1]:{port}/ok",
    ],
)
@pytest.mark.anyio
async def test_loopback_is_refused_unless_allowed(target: Target, url: str) -> None:
    """Loopback, as a literal or as a name resolving to it, is refused by the default policy,
    and the delivery stays on the retry ladder (a later allowed network may lift it)."""
    request = Request(method="GET", url=url.format(port=target.port))
    result = await attempt(request, policy=AddressPolicy())
    assert result.error_kind is ErrorKind.SSRF
    assert isinstance(result.outcome, Retry)
    assert target.hits["/ok"] == 0


@pytest.mark.anyio
async def test_name_resolving_to_allowed_loopback_is_delivered(target: Target) -> None:
    """With 127.0.0.0/8 allowed, a name resolving to loopback is delivered."""
    result = await attempt(Request(method="GET", url=f"http://localhost:{target.port}/ok"))
    assert result.outcome == Delivered()
    assert target.hits["/ok"] == 1


@pytest.mark.anyio
async def test_post_form_body_and_masked_log_url(target: Target) -> None:
    """A POST carries its body and content type; the logged URL has its token masked."""
    request = Request(
        method="POST",
        url=f"http://127.0.0.1:{target.port}/ok?token=s3cret&cid=1",
        body="cid=1&payout=2.50",
        content_type="application/x-www-form-urlencoded",
    )
    result = await attempt(request)
    assert result.outcome == Delivered()
    assert target.bodies == [
        ("/ok?token=s3cret&cid=1", "application/x-www-form-urlencoded", b"cid=1&payout=2.50")
    ]
    assert result.url == f"http://127.0.0.1:{target.port}/ok?token=***&cid=1"


@pytest.mark.anyio
async def test_closed_port_is_a_connect_error() -> None:
    """Nothing listening is a connect failure, retried."""
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        result = await attempt(Request(method="GET", url=f"http://127.0.0.1:{port}/"))
    assert result.error_kind is ErrorKind.CONNECT
    assert isinstance(result.outcome, Retry)


@pytest.mark.parametrize("url", ["not a url", "ftp://127.0.0.1/x", "/relative"])
@pytest.mark.anyio
async def test_invalid_url_gives_up(url: str) -> None:
    """A rendered URL that is not absolute http(s) is not retried."""
    result = await attempt(Request(method="GET", url=url))
    assert result.error_kind is ErrorKind.INVALID_URL
    assert isinstance(result.outcome, GiveUp)
