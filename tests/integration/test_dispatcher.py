"""The dispatcher loop against a real database and real local HTTP targets."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.engine import Engine

from clickloop.domain.deliveries import REFUSED_REASON
from clickloop.sender.dispatcher import Dispatcher, Limits
from clickloop.services import entities
from clickloop.services.entities import write_setting
from clickloop.storage import tables as t
from tests.integration.test_outbox import NOW, World, add_deliveries, make_world, rows

FAST = Limits(poll_interval=0.02, flush_interval=0.01, maintenance_interval=0.05)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    """A clock that moves only when the test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Target:
    """A local HTTP target recording hits; /flaky fails three times, /hang waits for release."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.release = asyncio.Event()
        self.base = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.hits[request.path_qs] += 1
        if request.path == "/flaky" and self.hits[request.path_qs] <= 3:
            return web.Response(status=500)
        if request.path == "/gone":
            return web.Response(status=410)
        if request.path == "/hang":
            await self.release.wait()
        return web.Response(text="OK")


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    recorder = Target()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    recorder.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield recorder
    recorder.release.set()
    await runner.cleanup()


def allow_loopback(engine: Engine) -> None:
    with engine.begin() as conn:
        write_setting(conn, "allowed_networks", ["127.0.0.0/8"])


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` until it holds; a generous deadline only turns a hang into a failure."""
    for _ in range(1000):
        if await asyncio.to_thread(condition):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


class Running:
    """A dispatcher running in the test's loop."""

    def __init__(self, engine: Engine, clock: Clock, limits: Limits = FAST) -> None:
        self.dispatcher = Dispatcher(engine, limits=limits, clock=clock)
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Dispatcher:
        self.task = asyncio.create_task(self.dispatcher.run(self.stop))
        return self.dispatcher

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.task is not None
        await self.task


def states(engine: Engine) -> Counter[str]:
    return Counter(r.state for r in rows(engine))


def attempt_statuses(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        a = t.delivery_attempts
        return list(conn.execute(select(a.c.status_code).order_by(a.c.id)).scalars())


def world_for(engine: Engine) -> World:
    allow_loopback(engine)
    return make_world(engine, source_url=None)


@pytest.mark.anyio
async def test_500_three_times_then_200_lands_on_the_fourth_attempt(
    engine: Engine, target: Target
) -> None:
    """Retries follow the schedule; the fourth attempt succeeds and four attempts are logged."""
    world = world_for(engine)
    clock = Clock(NOW)
    add_deliveries(world, [f"{target.base}/flaky"])
    async with Running(engine, clock):
        for attempts in (2, 3):  # the first retry is immediate; later ones wait for the clock
            await wait_for(
                lambda n=attempts: (
                    rows(engine)[0].attempts == n  # type: ignore[misc]
                    and rows(engine)[0].claimed_by is None
                ),
                f"{attempts} attempts",
            )
            row = rows(engine)[0]
            assert row.next_attempt_at > clock.now
            clock.now = row.next_attempt_at
        await wait_for(lambda: rows(engine)[0].state == "delivered", "delivered")
    assert attempt_statuses(engine) == [500, 500, 500, 200]
    assert target.hits["/flaky"] == 4


@pytest.mark.anyio
async def test_every_queued_delivery_is_sent_once(engine: Engine, target: Target) -> None:
    """A batch larger than the claim size is delivered completely, each request exactly once."""
    world = world_for(engine)
    urls = [f"{target.base}/ok?n={n}" for n in range(300)]
    add_deliveries(world, urls)
    limits = Limits(
        poll_interval=0.02,
        flush_interval=0.01,
        batch=50,
        per_host=16,
        per_host_held=100,
        held=200,
        concurrency=64,
    )
    async with Running(engine, Clock(NOW), limits):
        await wait_for(lambda: states(engine) == Counter(delivered=300), "all delivered")
    assert sorted(target.hits.values()) == [1] * 300


@pytest.mark.anyio
async def test_hung_target_does_not_slow_a_healthy_one(engine: Engine, target: Target) -> None:
    """While a hung host holds its per-host slots, another host's deliveries all land."""
    world = world_for(engine)
    hung = [f"{target.base}/hang?n={n}" for n in range(10)]
    # The same server under another name is another host for the limits.
    healthy = [f"http://localhost:{target.base.rsplit(':', 1)[1]}/ok?n={n}" for n in range(40)]
    add_deliveries(world, hung + healthy)
    limits = Limits(
        poll_interval=0.02,
        flush_interval=0.01,
        concurrency=8,
        per_host=2,
        per_host_held=4,
        held=8,
        batch=2,
        timeout=aiohttp.ClientTimeout(total=30),
    )
    async with Running(engine, Clock(NOW), limits):
        try:
            await wait_for(lambda: states(engine)["delivered"] == 40, "healthy delivered")
            assert sum(n for path, n in target.hits.items() if path.startswith("/hang")) == 2
            assert attempt_statuses(engine) == [200] * 40
        finally:
            target.release.set()  # let the hung requests end so that the dispatcher can stop


@pytest.mark.anyio
async def test_loopback_refused_stays_queued_until_allowed(engine: Engine, target: Target) -> None:
    """Without an allowed network a delivery to 127.0.0.1 is refused and not sent, but stays on
    the retry ladder; allowing loopback (a configuration change) sends it at once."""
    world = make_world(engine, source_url=None)
    add_deliveries(world, [f"{target.base}/ok"])
    async with Running(engine, Clock(NOW)):
        await wait_for(lambda: rows(engine)[0].attempts == 2, "two refused attempts")
        [row] = rows(engine)
        assert (row.state, row.last_error) == ("queued", REFUSED_REASON)
        assert row.next_attempt_at > NOW  # waits for its next rung: 5 s
        assert not target.hits
        entities.update_settings(engine, {"allowed_networks": ["127.0.0.0/8"]})
        await wait_for(lambda: rows(engine)[0].state == "delivered", "delivered once allowed")
    with engine.connect() as conn:
        kinds = list(conn.execute(select(t.delivery_attempts.c.error_kind)).scalars())
    assert kinds == ["ssrf", "ssrf", None]
    assert target.hits["/ok"] == 1


@pytest.mark.anyio
async def test_410_disables_the_target_until_re_enabled(engine: Engine, target: Target) -> None:
    """A 410 parks the target's queue; enabling the target again resumes it."""
    world = world_for(engine)
    add_deliveries(world, [f"{target.base}/gone"])
    clock = Clock(NOW)
    async with Running(engine, clock):
        await wait_for(lambda: rows(engine)[0].state == "disabled", "disabled")
        with engine.connect() as conn:
            source = conn.execute(select(t.traffic_sources)).one()
        assert (source.postback_enabled, source.postback_disabled_reason) == (
            False,
            "http_status: HTTP 410",
        )
        add_deliveries(world, [f"{target.base}/ok?after=gone"], enabled=False)
        assert rows(engine)[1].state == "disabled"
        with engine.begin() as conn:
            conn.execute(t.traffic_sources.update().values(postback_enabled=True))
        clock.now = NOW + timedelta(seconds=1)
        await wait_for(lambda: states(engine)["delivered"] == 1, "resumed and delivered")
    assert target.hits["/ok?after=gone"] == 1


@pytest.mark.anyio
async def test_unusable_allowed_network_is_skipped(engine: Engine, target: Target) -> None:
    """A typo in allowed_networks is ignored rather than stopping the dispatcher."""
    world = make_world(engine, source_url=None)
    with engine.begin() as conn:
        write_setting(conn, "allowed_networks", ["not a network", "127.0.0.0/8"])
    add_deliveries(world, [f"{target.base}/ok"])
    async with Running(engine, Clock(NOW)):
        await wait_for(lambda: rows(engine)[0].state == "delivered", "delivered")
