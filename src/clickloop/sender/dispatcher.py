"""The S2S dispatcher: claim due deliveries, send them concurrently, record, reschedule.

One asyncio loop per process (`clickloop worker`, or inside `clickloop serve`). Database calls run
in threads; HTTP goes through one shared aiohttp session with a guarded resolver.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiohttp
from prometheus_client import Counter, Histogram
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from clickloop.domain.deliveries import Attempt, Rng
from clickloop.sender.delivery import DEFAULT_TIMEOUT, Request, send_attempt, utc_now
from clickloop.sender.ssrf import AddressPolicy, GuardedResolver, make_connector
from clickloop.services.entities import read_config_version_in, read_settings
from clickloop.storage import outbox
from clickloop.storage.db import reader_engine, writer_engine
from clickloop.storage.outbox import ClaimedDelivery, DisabledTarget

log = logging.getLogger(__name__)

ATTEMPTS = Counter(
    "clickloop_s2s_attempts_total", "S2S attempts by result (delivered or error kind)", ["result"]
)
ATTEMPT_SECONDS = Histogram(
    "clickloop_s2s_attempt_seconds",
    "S2S request latency",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15),
)
TARGETS_DISABLED = Counter(
    "clickloop_s2s_targets_disabled_total", "S2S targets disabled (410 or failing too long)"
)

DISABLE_AFTER_SETTING = "s2s_disable_after_hours"  # in services.entities.DEFAULT_SETTINGS


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """How hard one dispatcher pushes."""

    concurrency: int = 256  # requests in flight, over all hosts
    per_host: int = 64  # requests in flight to one host
    per_host_held: int = 512  # claims one host may hold: in flight + waiting in memory
    held: int = 2048  # claims held over all hosts
    batch: int = 256  # most deliveries claimed by one statement (<= per_host_held)
    poll_interval: float = 0.1  # seconds between claims when idle: first attempt within 1 s
    lease: timedelta = outbox.DEFAULT_LEASE
    flush_interval: float = 0.02  # seconds between writes of finished attempts
    flush_rows: int = 500
    host_busy_delay: timedelta = timedelta(seconds=1)
    maintenance_interval: float = 5.0  # resume targets re-enabled by any path (even SQL)
    timeout: aiohttp.ClientTimeout = field(default_factory=lambda: DEFAULT_TIMEOUT)

    def __post_init__(self) -> None:
        if not 0 < self.batch <= self.per_host_held <= self.held:
            raise ValueError("need 0 < batch <= per_host_held <= held")
        if self.lease.total_seconds() < (self.timeout.total or 0) + 10:
            raise ValueError("the lease must outlast a request's total timeout by 10 s")

    @property
    def host_claim_threshold(self) -> int:
        """A host holding more than this is left out of claims: any batch still fits it."""
        return self.per_host_held - self.batch


@dataclass(frozen=True, slots=True, kw_only=True)
class _Settings:
    """What the dispatcher keeps of the settings, as of one `config_version`."""

    version: int
    allowed: tuple[str, ...]  # allowed_networks as stored
    disable_after: timedelta


def make_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{random.randrange(16**6):06x}"


@dataclass(slots=True)
class _Host:
    in_flight: int = 0
    waiting: deque[tuple[ClaimedDelivery, float]] = field(default_factory=deque)

    @property
    def held(self) -> int:
        return self.in_flight + len(self.waiting)


class Dispatcher:
    """Delivers the outbox until `stop` is set; `notify()` wakes it for a new conversion."""

    def __init__(
        self,
        engine: Engine,
        *,
        worker_id: str | None = None,
        limits: Limits | None = None,
        rng: Rng | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        # BEGIN IMMEDIATE on SQLite: a claim or record never has to upgrade a read lock.
        self._engine = writer_engine(engine)
        self._reader = reader_engine(engine)
        self.worker_id = worker_id or make_worker_id()
        self._limits = limits or Limits()
        self._rng: Rng = rng or random.Random()
        self._clock = clock
        self._policy = AddressPolicy()
        self._allowed: tuple[str, ...] = ()
        self._config_version: int | None = None  # the settings read last; None: not yet
        self._disable_after = outbox.DEFAULT_DISABLE_AFTER
        self._hosts: dict[str, _Host] = {}
        self._held = 0  # claims in flight or waiting in memory
        self._slots = asyncio.Semaphore(self._limits.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._results: list[tuple[ClaimedDelivery, Attempt]] = []
        self._deferred: list[int] = []
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None
        self.sent = 0

    def notify(self) -> None:
        """Claim now rather than at the next poll (call from the dispatcher's event loop)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await asyncio.to_thread(self._maintain)
        except SQLAlchemyError:  # the cycle retries; until then nothing non-public is allowed
            log.exception("dispatcher could not read its settings; retrying")
        self._resolver = GuardedResolver(self._policy)
        async with aiohttp.ClientSession(
            connector=make_connector(self._resolver),
            timeout=self._limits.timeout,
            auto_decompress=False,
        ) as session:
            self._session = session
            try:
                await self._cycle_until(stop)
            finally:
                await self._drain()
                self._session = None
        log.info("dispatcher %s stopped after %d attempts", self.worker_id, self.sent)

    async def _cycle_until(self, stop: asyncio.Event) -> None:
        """One database round trip per cycle: record what finished, then claim what fits.

        A single writer per dispatcher: on SQLite, writers of one process queueing for the
        lock cost more than the statements themselves.
        """
        limits = self._limits
        next_maintenance = time.monotonic() + limits.maintenance_interval
        while not stop.is_set():
            if time.monotonic() >= next_maintenance:
                try:
                    await asyncio.to_thread(self._maintain)
                except SQLAlchemyError:
                    log.exception("dispatcher maintenance failed; retrying later")
                next_maintenance = time.monotonic() + limits.maintenance_interval
            room = min(limits.held - self._held, limits.batch)
            self._wake.clear()
            claims = await self._exchange(room)
            for claim in claims:
                self._admit(claim)
            if room > 0 and len(claims) == room:
                continue  # more may be due: claim again at once
            # Finished attempts are written within flush_interval; an idle queue is polled.
            busy = self._results or self._deferred
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait(
                {waiter, stopper},
                timeout=limits.flush_interval if busy else limits.poll_interval,
                return_when=asyncio.FIRST_COMPLETED,
            )
            waiter.cancel()
            stopper.cancel()

    async def _exchange(
        self, room: int, released: list[int] | None = None
    ) -> list[ClaimedDelivery]:
        results, self._results = self._results, []
        deferred, self._deferred = self._deferred, []
        if not (results or deferred or released or room > 0):
            return []
        threshold = self._limits.host_claim_threshold
        full = [key for key, host in self._hosts.items() if host.held > threshold]
        try:
            return await asyncio.to_thread(
                self._write, results, deferred, released or [], room, full
            )
        except SQLAlchemyError:
            # Kept for the next cycle; if the process dies first, the leases expire and the
            # deliveries are sent again (at least once, never lost).
            log.exception("outbox round trip failed (%d attempts to record)", len(results))
            self._results[:0] = results
            self._deferred[:0] = deferred
            await asyncio.sleep(1)
            return []

    def _write(
        self,
        results: list[tuple[ClaimedDelivery, Attempt]],
        deferred: list[int],
        released: list[int],
        room: int,
        full: list[str],
    ) -> list[ClaimedDelivery]:
        now = self._clock()
        claims: list[ClaimedDelivery] = []
        if not (results or deferred or released):
            with self._reader.connect() as conn:
                if read_config_version_in(conn) == self._config_version and not outbox.any_due(
                    conn, now=now
                ):
                    return claims  # an idle poll: nothing to write, nothing to claim, no change
        with self._engine.begin() as conn:
            # Every configuration change bumps the version: one indexed read per round trip
            # lets a change (an allowed network) govern the very next claim.
            changed = self._read_changes(conn, now)
            disabled = outbox.record_attempts(
                conn, results, worker=self.worker_id, now=now, disable_after=self._disable_after
            )
            outbox.release_claims(
                conn, worker=self.worker_id, ids=deferred, until=now + self._limits.host_busy_delay
            )
            outbox.release_claims(conn, worker=self.worker_id, ids=released)
            if room > 0:
                claims = outbox.claim_due(
                    conn,
                    worker=self.worker_id,
                    now=now,
                    limit=room,
                    lease=self._limits.lease,
                    exclude_hosts=full,
                )
        self._apply(changed)  # committed: the claims are sent under the settings read with them
        report_disabled(disabled)
        return claims

    def _maintain(self) -> None:
        with self._engine.begin() as conn:
            now = self._clock()
            changed = self._read_changes(conn, now)
            resumed = outbox.resume_enabled_targets(conn, now=now)
        self._apply(changed)
        if resumed:
            log.info("resumed %d deliveries of re-enabled targets", resumed)

    def _read_changes(self, conn: Connection, now: datetime) -> _Settings | None:
        """The settings, read again when `config_version` moved (None when it did not); when
        the allowed networks changed, deliveries waiting after a refusal are made due at once
        in the caller's transaction (the refusal may be lifted). Apply the result with
        `_apply` once that transaction has committed.
        """
        version = read_config_version_in(conn)
        if version == self._config_version:
            return None
        settings = read_settings(conn)
        allowed = tuple(str(cidr) for cidr in settings.get("allowed_networks") or ())
        if allowed != self._allowed and self._config_version is not None:
            retried = outbox.retry_refused_now(conn, now=now)
            if retried:
                log.info("allowed networks changed: %d refused deliveries due now", retried)
        hours = settings.get(DISABLE_AFTER_SETTING)
        return _Settings(
            version=version,
            allowed=allowed,
            disable_after=timedelta(hours=float(hours)) if hours else self._disable_after,
        )

    def _apply(self, changed: _Settings | None) -> None:
        if changed is None:
            return
        if changed.allowed != self._allowed or self._config_version is None:
            self._policy = _read_policy(changed.allowed)
            if self._resolver is not None:
                self._resolver.policy = self._policy
        self._allowed = changed.allowed
        self._disable_after = changed.disable_after
        self._config_version = changed.version

    def _admit(self, claim: ClaimedDelivery) -> None:
        host = self._hosts.get(claim.host)
        if host is None:
            host = self._hosts[claim.host] = _Host()
        if host.in_flight < self._limits.per_host:
            self._start(claim.host, host, claim)
        elif host.held < self._limits.per_host_held:
            host.waiting.append((claim, time.monotonic()))
            self._held += 1
        else:  # not expected: a host is left out of claims before it can fill up
            self._deferred.append(claim.id)

    def _start(self, key: str, host: _Host, claim: ClaimedDelivery) -> None:
        host.in_flight += 1
        self._held += 1
        task = asyncio.create_task(self._send(key, host, claim))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, key: str, host: _Host, claim: ClaimedDelivery) -> None:
        assert self._session is not None
        request = Request(
            method=claim.method,
            url=claim.url,
            body=claim.body,
            content_type=claim.content_type,
            headers=claim.headers,
            must_contain=claim.response_must_contain,
        )
        try:
            async with self._slots:
                attempt = await send_attempt(
                    self._session,
                    request,
                    policy=self._policy,
                    attempts_made=claim.attempts + 1,
                    rng=self._rng,
                    timeout=self._limits.timeout,
                    clock=self._clock,
                )
            self._results.append((claim, attempt))
            self.sent += 1
            if attempt.error_kind is not None:
                log.info(
                    "delivery %d attempt %d failed (%s): %s %s",
                    claim.id,
                    claim.attempts + 1,
                    attempt.error or attempt.error_kind,
                    claim.method,
                    attempt.url,
                )
            ATTEMPTS.labels(str(attempt.error_kind or "delivered")).inc()
            ATTEMPT_SECONDS.observe(attempt.latency_ms / 1000)
        except Exception:  # a bug must not kill the loop; the lease expires and it is retried
            log.exception("delivery %d: unexpected error", claim.id)
        finally:
            host.in_flight -= 1
            self._held -= 1
            self._next_waiting(key, host)
            if len(self._results) >= self._limits.flush_rows:
                self._wake.set()
            # Claim again as soon as a whole batch fits again, globally or for this host
            # (crossing the line, not every completion: claims are not free).
            limits = self._limits
            fits = self._held + limits.batch <= limits.held
            crossed = self._held + limits.batch == limits.held or (
                host.held == limits.host_claim_threshold
            )
            if not self._held or (fits and crossed):
                self._wake.set()

    def _next_waiting(self, key: str, host: _Host) -> None:
        # A waiting claim may start only while its lease outlives the longest possible request.
        budget = self._limits.lease.total_seconds() - (self._limits.timeout.total or 0) - 5
        while host.waiting and host.in_flight < self._limits.per_host:
            claim, since = host.waiting.popleft()
            self._held -= 1
            if time.monotonic() - since > budget:
                self._deferred.append(claim.id)
                continue
            self._start(key, host, claim)
        if not host.in_flight and not host.waiting:
            del self._hosts[key]

    async def _drain(self) -> None:
        """Stop: hand back claims still waiting, let requests in flight end, record them."""
        released: list[int] = []
        for host in self._hosts.values():
            released.extend(claim.id for claim, _ in host.waiting)
            self._held -= len(host.waiting)
            host.waiting.clear()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        await self._exchange(0, released)


def report_disabled(disabled: Iterable[DisabledTarget]) -> None:
    """One warning per target disabled. Each names its own target, so they carry `counted`:
    the RepeatFilter, which groups by message template, would otherwise keep only the first
    target disabled in a window and count the others under its name."""
    for target in disabled:
        TARGETS_DISABLED.inc()
        log.warning(
            "S2S target %s %d disabled: %s",
            target.kind,
            target.id,
            target.reason,
            extra={"counted": True},
        )


def _read_policy(cidrs: Iterable[object]) -> AddressPolicy:
    """The outbound policy from the settings, skipping (and logging) unusable entries."""
    usable: list[str] = []
    for cidr in cidrs:
        try:
            AddressPolicy.from_cidrs([str(cidr)])
        except ValueError:
            log.warning("allowed_networks: ignoring %r, not a network", cidr)
        else:
            usable.append(str(cidr))
    return AddressPolicy.from_cidrs(usable)


async def run_until_cancelled(engine: Engine, *, limits: Limits | None = None) -> None:
    """Run a dispatcher as a background task (inside `clickloop serve`); on cancellation it
    stops claiming, lets requests in flight finish (within their timeout) and records them.
    """
    stop = asyncio.Event()
    dispatcher = Dispatcher(engine, limits=limits)
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        stop.set()
        await task
        raise


def run_worker(engine: Engine, *, limits: Limits | None = None) -> int:
    """`clickloop worker`: deliver until SIGTERM or SIGINT, then stop cleanly."""
    import signal

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        dispatcher = Dispatcher(engine, limits=limits)
        log.info("dispatcher %s started", dispatcher.worker_id)
        await dispatcher.run(stop)

    try:
        import uvloop
    except ImportError:  # uvloop is optional: plain asyncio is slower, not wrong
        asyncio.run(main())
    else:
        uvloop.run(main())
    return 0
