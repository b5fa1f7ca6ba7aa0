"""`/metrics`: Prometheus text for all of the server's worker processes, for a bearer token.

`clickloop serve` gives every process one per-run directory (PROMETHEUS_MULTIPROC_DIR, emptied
at start): prometheus_client's multiprocess mode keeps each process's counters and histograms
there, and a scrape, whichever worker answers it, sums them all. The S2S queue depth is read
from the database at scrape time (it is the same for every process). Without that directory
(an app built in-process, as tests do) the process's own registry is served.

The endpoint answers only `Authorization: Bearer $CLICKLOOP_METRICS_TOKEN`; with no token set
it is off (403), so that the public port never shows the tracker's traffic.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from clickloop.http.responses import Scope, Send, send_response, send_text
from clickloop.services.deliveries import queue_depth

log = logging.getLogger(__name__)

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
QUEUE_METRIC = "clickloop_s2s_queue"
FLUSH_SECONDS = 1.0
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Tally:
    """One counter (a labelled child) counted in the process and added to prometheus_client's
    value by `flush_tallies`: in multiprocess mode every `inc` there takes a lock and writes the
    mmap file, three times a click or postback (3.1 µs against 0.2 tallied: docs/deployment.md,
    "Metrics and logs"). Event loop only."""

    __slots__ = ("_child", "count")

    def __init__(self, child: Any) -> None:
        self._child = child
        self.count = 0
        _TALLIES.append(self)

    def inc(self) -> None:
        self.count += 1

    def flush(self) -> None:
        count, self.count = self.count, 0
        if count:
            self._child.inc(count)


class LatencyTally:
    """A histogram's observations counted in the process per bucket, added by `flush_tallies`
    (through the histogram's own values: prometheus_client observes one amount at a time)."""

    __slots__ = ("_bounds", "_counts", "_histogram", "_sum")

    def __init__(
        self, name: str, documentation: str, registry: CollectorRegistry = REGISTRY
    ) -> None:
        self._histogram = Histogram(
            name, documentation, buckets=_LATENCY_BUCKETS, registry=registry
        )
        self._bounds = [*_LATENCY_BUCKETS, float("inf")]
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        _TALLIES.append(self)

    def observe(self, seconds: float) -> None:
        self._counts[bisect_left(self._bounds, seconds)] += 1  # the first bound >= seconds
        self._sum += seconds

    def flush(self) -> None:
        counts, self._counts = self._counts, [0] * len(self._bounds)
        total, self._sum = self._sum, 0.0
        if not any(counts):
            return
        # The histogram's own values, one per bucket and not cumulated, as observe() adds to
        # them (prometheus_client has no bulk observe; tests/unit/test_metric_tallies.py holds
        # the two equal).
        buckets = self._histogram._buckets
        for value, count in zip(buckets, counts, strict=True):
            if count:
                value.inc(count)
        self._histogram._sum.inc(total)


_TALLIES: list[Tally | LatencyTally] = []


def flush_tallies() -> None:
    """Add what the tallies counted to the metrics a scrape reads (every FLUSH_SECONDS from the
    app, before this process answers a scrape, and at shutdown)."""
    for tally in _TALLIES:
        tally.flush()


CLICK_SECONDS = LatencyTally(
    "clickloop_click_seconds",
    "Campaign link requests: from routing to the answer (the click durable)",
)
POSTBACK_SECONDS = LatencyTally(
    "clickloop_postback_seconds",
    "Postback requests: from routing to the answer (the postback durable)",
)


class QueueDepth(Collector):
    """`clickloop_s2s_queue{state="queued|retrying"}`, counted when scraped."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            QUEUE_METRIC, "S2S deliveries waiting to be sent", labels=["state"]
        )
        try:
            depth = queue_depth(self.engine)
        except Exception as exc:  # the database is down: the other metrics still answer
            log.warning("metrics: S2S queue depth not read: %s", exc)
            return
        for state, count in depth.items():
            gauge.add_metric([state], count)
        yield gauge


class MetricsEndpoint:
    def __init__(self, engine: Engine, *, token: str) -> None:
        self._token = token.encode()
        self._registry = CollectorRegistry()
        if os.environ.get(MULTIPROCESS_DIR):
            multiprocess.MultiProcessCollector(self._registry)  # type: ignore[no-untyped-call]
        else:
            self._registry = REGISTRY
        # Its own registry: collected (a query) at each scrape and nowhere else.
        self._queue = CollectorRegistry()
        self._queue.register(QueueDepth(engine))

    async def handle(self, scope: Scope, send: Send) -> None:
        if not self._token:
            await send_text(send, 403, "metrics are off: set CLICKLOOP_METRICS_TOKEN to scrape")
            return
        if not self._authorised(scope):
            await send_text(
                send,
                401,
                "send Authorization: Bearer <metrics token>",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        flush_tallies()
        body = await asyncio.to_thread(self._body)
        await send_response(send, 200, body, [(b"content-type", CONTENT_TYPE_LATEST.encode())])

    def _authorised(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = bytes(value).partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(
                    token.strip(), self._token
                )
        return False

    def _body(self) -> bytes:
        return generate_latest(self._registry) + generate_latest(self._queue)
