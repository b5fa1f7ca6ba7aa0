"""The ASGI application: a plain router in front of the hot paths, with its lifespan.

Campaign links are single path segments (`/{alias}`) and postbacks `/{key}/postback`; those are
dispatched by hand, without a framework in the way. Everything else is small.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable, Coroutine
from time import perf_counter
from typing import Any

from sqlalchemy.engine import Engine

from clickloop.domain.secrets import SecretMaskingFilter
from clickloop.http.api import create_api
from clickloop.http.demo import demo_offer
from clickloop.http.metrics import (
    CLICK_SECONDS,
    FLUSH_SECONDS,
    POSTBACK_SECONDS,
    MetricsEndpoint,
    flush_tallies,
)
from clickloop.http.postbacks import PostbackHandler
from clickloop.http.protocol import open_connections
from clickloop.http.responses import Receive, Scope, Send, send_text
from clickloop.http.tracking import ClickHandler
from clickloop.http.web import create_web
from clickloop.logs import Outage
from clickloop.services.config import TrackerConfig, load_config
from clickloop.services.demo import DEMO_OFFER_PATH
from clickloop.services.entities import read_config_version, read_config_version_in
from clickloop.services.masking import log_secrets
from clickloop.services.rate_updates import UpdateSettings
from clickloop.services.visitors import warm_up
from clickloop.settings import Settings
from clickloop.storage.db import writer_engine
from clickloop.storage.report_cubes import (
    FOLLOW_INTERVAL,
    add_clicks,
    follow,
    follow_days,
    follow_moves,
)
from clickloop.storage.writer import GroupCommitWriter

log = logging.getLogger(__name__)

CONFIG_POLL_SECONDS = 1.0
# How long /readyz waits for a commit when the database timeout is off (0).
READY_TIMEOUT_SECONDS = 5.0
API_PREFIX = "/api/v1"
WEB_PREFIX = "/admin"
BackgroundTask = Callable[["ClickloopApp"], Coroutine[Any, Any, None]]


class ClickloopApp:
    """Holds the engine, the writers and the current config snapshot; routes requests."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        background: tuple[BackgroundTask, ...] = (),
        log_filter: SecretMaskingFilter | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        # Masks the process's log lines; told the declared secrets on every config reload.
        self.log_filter = log_filter
        # Postbacks: units of work that each take every postback pending when they start, so
        # a writer thread's latency makes their batches. Clicks: one light row each; on SQLite
        # they commit faster on the event loop itself (storage/writer.py).
        self.writer = self._writer(engine, on_loop=False)
        self.click_writer = (
            self._writer(engine, on_loop=True) if engine.dialect.name == "sqlite" else self.writer
        )
        self.config: TrackerConfig = load_config(engine)
        # Clicks and postbacks meet the same database: one outage, logged once.
        outage = Outage(log)
        self.clicks = ClickHandler(
            self.click_writer, trusted_proxy_header=settings.trusted_proxy_header, outage=outage
        )
        self.postbacks = PostbackHandler(
            engine,
            self.writer,
            trusted_proxy_header=settings.trusted_proxy_header,
            timeout=settings.database_timeout_seconds or None,
            outage=outage,
        )
        self.api = create_api(
            engine,
            base_url=settings.base_url,
            data_dir=settings.data_dir,
            on_change=self.reload_config,
            report_timeout=settings.database_statement_timeout_seconds,
        )
        self.web = create_web(
            engine,
            base_url=settings.base_url,
            data_dir=settings.data_dir,
            on_change=self.reload_config,
            rates=UpdateSettings(
                url=settings.rates_url,
                timeout=settings.rates_timeout_seconds,
                daily=settings.rates_auto_update,
            ),
        )
        self.metrics = MetricsEndpoint(engine, token=settings.metrics_token)
        self._background = background
        self._tasks: list[asyncio.Task[None]] = []

    def _writer(self, engine: Engine, *, on_loop: bool) -> GroupCommitWriter:
        return GroupCommitWriter(
            writer_engine(engine),
            max_batch=self.settings.commit_max_rows,
            delay=self.settings.commit_delay_us / 1e6,
            on_loop=on_loop,
            connections=open_connections,
            timeout=self.settings.database_timeout_seconds or None,
            before_insert=add_clicks,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Routed here rather than in a method of its own: a click then resumes one coroutine
        # fewer when its commit wakes it.
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        segments = path.strip("/").split("/")
        head = method == "HEAD"
        if path.startswith(API_PREFIX + "/"):
            await self.api(
                {**scope, "root_path": scope.get("root_path", "") + API_PREFIX}, receive, send
            )
            return
        if path == WEB_PREFIX or path.startswith(WEB_PREFIX + "/"):
            await self.web(
                {**scope, "root_path": scope.get("root_path", "") + WEB_PREFIX}, receive, send
            )
            return
        if len(segments) == 1 and segments[0] and not segments[0].startswith("_"):
            if method not in ("GET", "HEAD"):
                await send_text(send, 405, "Method Not Allowed", [(b"allow", b"GET, HEAD")])
                return
            if segments[0] == "healthz":
                await send_text(send, 200, "ok", head=head)
            elif segments[0] == "readyz":
                await self._readiness(send, head=head)
            elif segments[0] == "metrics":
                await self.metrics.handle(scope, send)
            else:
                started = perf_counter()
                await self.clicks.handle(scope, send, self.config, segments[0])
                CLICK_SECONDS.observe(perf_counter() - started)
            return
        if len(segments) == 2 and segments[1] == "postback":
            started = perf_counter()
            await self.postbacks.handle(scope, receive, send, self.config, segments[0])
            POSTBACK_SECONDS.observe(perf_counter() - started)
            return
        if path == "/" and method not in ("GET", "HEAD"):
            await send_text(send, 405, "Method Not Allowed", [(b"allow", b"GET, HEAD")])
            return
        if path == DEMO_OFFER_PATH:
            await demo_offer(self.engine, self.config, scope, receive, send)
            return
        if path == "/":
            await send_text(send, 200, "clickloop", head=head)
            return
        await send_text(send, 404, "Not Found", head=head)

    async def _readiness(self, send: Send, *, head: bool) -> None:
        """Ready when every writer commits a read of the database within the timeout: the
        database answers and no writer is stuck (a load balancer's readiness probe)."""
        timeout = self.settings.database_timeout_seconds or READY_TIMEOUT_SECONDS
        try:
            for writer in dict.fromkeys((self.click_writer, self.writer)):
                await asyncio.wait_for(writer.run(read_config_version_in), timeout)
        except Exception as exc:  # StorageUnavailable, a timeout, or the database's own error
            reason = "timed out" if isinstance(exc, TimeoutError) else "unavailable"
            log.warning("readiness: the database %s: %s", reason, exc)
            await send_text(
                send,
                503,
                f"not ready: the database {reason}",
                [(b"retry-after", b"5")],
                head=head,
            )
            return
        await send_text(send, 200, "ready", head=head)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        await asyncio.to_thread(warm_up)
        # What start-up loaded (GeoIP ranges, UA rules, SQLAlchemy, templates) lives as long as
        # the process: frozen out of the collector's sight, a full collection under load takes
        # ~1 ms instead of ~50 ms with the GIL held (postback p99 35 → 16 ms).
        gc.collect()
        gc.freeze()
        self.writer.start()
        if self.click_writer is not self.writer:
            self.click_writer.start()
        await self._declare_secrets()
        self._tasks.append(asyncio.create_task(self._poll_config()))
        self._tasks.append(asyncio.create_task(self._flush_metrics()))
        self._tasks.append(asyncio.create_task(self._follow()))
        self._tasks.extend(asyncio.create_task(task(self)) for task in self._background)

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.click_writer.stop()  # the same writer twice: stopped once
        await self.writer.stop()
        flush_tallies()

    async def reload_config(self) -> None:
        config = await asyncio.to_thread(load_config, self.engine)
        # A poll that read an older snapshot can finish after a newer reload: keep the newest.
        if config.version >= self.config.version:
            self.config = config
        await self._declare_secrets()

    async def _declare_secrets(self) -> None:
        if self.log_filter is not None:
            self.log_filter.declared = await asyncio.to_thread(
                log_secrets, self.engine, self.settings.data_dir
            )

    async def _poll_config(self) -> None:
        while True:
            await asyncio.sleep(CONFIG_POLL_SECONDS)
            try:
                version = await asyncio.to_thread(read_config_version, self.engine)
                if version != self.config.version:
                    await self.reload_config()
            except Exception as exc:  # a database hiccup must not end polling
                log.warning("config poll failed: %s", exc)

    async def _flush_metrics(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            flush_tallies()

    async def _follow(self) -> None:
        """Fold the new clicks (SQLite) and the conversions' moves into the report cubes every
        FOLLOW_INTERVAL, and seal the spans of the days that ended (report_cubes.follow,
        follow_moves, follow_days)."""
        while True:
            await asyncio.sleep(FOLLOW_INTERVAL)
            try:
                await follow(self.engine, self.click_writer.run)
                await follow_moves(self.engine, self.writer.run)
                await follow_days(self.engine)
            except Exception as exc:  # a database hiccup must not end following
                log.warning("folding into the report cubes failed: %s", exc)


def create_app(settings: Settings, engine: Engine, **kwargs: Any) -> ClickloopApp:
    return ClickloopApp(settings, engine, **kwargs)
