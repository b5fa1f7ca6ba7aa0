"""`clickloop worker` processes against a real database and a real local HTTP target: a worker
killed with SIGKILL loses nothing, and two workers never send one delivery at the same time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from clickloop.services.entities import write_setting
from clickloop.storage import tables as t
from tests.integration.test_outbox import add_deliveries, make_world

pytestmark = pytest.mark.slow


class Recorder:
    """What the target saw: hits per delivery, and requests that overlapped for one delivery."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.in_flight: set[str] = set()
        self.overlaps = 0


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, str]]:
    state = Recorder(delay=0.05)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            n = parse_qs(urlsplit(self.path).query)["n"][0]
            with state.lock:
                if n in state.in_flight:
                    state.overlaps += 1
                state.in_flight.add(n)
                state.hits[n] += 1
            time.sleep(state.delay)
            with state.lock:
                state.in_flight.discard(n)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def start_worker(database_url: str, tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CLICKLOOP_DATABASE_URL": database_url,
        "CLICKLOOP_DATA_DIR": str(tmp_path / "data"),
        "CLICKLOOP_LOG_LEVEL": "warning",
        "CLICKLOOP_S2S_PER_HOST": "16",
        "CLICKLOOP_S2S_CONNECT_TIMEOUT_SECONDS": "1",
        # Not shorter: on a loaded machine a 2 s limit sent a few deliveries into the 5-minute
        # retry, past the test's deadline.
        "CLICKLOOP_S2S_TOTAL_TIMEOUT_SECONDS": "5",
        # Short, so that the test need not wait a minute for a dead worker's claims.
        "CLICKLOOP_S2S_LEASE_SECONDS": "15",
    }
    log = (tmp_path / f"{name}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "clickloop.cli", "worker"], env=env, stdout=log, stderr=log
    )


def wait_until(condition: Callable[[], bool], what: str, deadline: float = 90) -> None:
    """Poll until `condition` holds; the deadline only turns a hang into a failure."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def count(engine: Engine, state: str) -> int:
    with engine.connect() as conn:
        query = select(func.count()).where(t.deliveries.c.state == state)
        return int(conn.execute(query.select_from(t.deliveries)).scalar_one())


def queue(engine: Engine, base: str, n: int) -> None:
    with engine.begin() as conn:
        write_setting(conn, "allowed_networks", ["127.0.0.0/8"])
    world = make_world(engine, source_url=None)
    add_deliveries(world, [f"{base}/pb?n={i}" for i in range(n)])


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(30)


def test_sigkill_mid_batch_loses_nothing(
    engine: Engine, database_url: str, tmp_path: Path, recorder: tuple[Recorder, str]
) -> None:
    """A worker killed mid-batch leaves claims that a new worker takes over once they expire."""
    state, base = recorder
    total = 1500
    queue(engine, base, total)
    first = start_worker(database_url, tmp_path, "first")
    try:
        wait_until(lambda: len(state.hits) >= 200, "first deliveries")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    with engine.connect() as conn:
        claimed = conn.execute(
            select(func.count())
            .select_from(t.deliveries)
            .where(t.deliveries.c.claimed_by.is_not(None))
        ).scalar_one()
    assert count(engine, "delivered") < total
    assert claimed > 0  # the kill did strand leased deliveries
    second = start_worker(database_url, tmp_path, "second")
    try:
        wait_until(lambda: count(engine, "delivered") == total, "all delivered")
    finally:
        stop(second)
    assert set(state.hits) == {str(i) for i in range(total)}
    # At least once: only deliveries in flight at the kill may have gone out twice.
    assert sum(state.hits.values()) - total <= claimed


def test_two_workers_never_send_one_delivery_twice_at_once(
    engine: Engine, database_url: str, tmp_path: Path, recorder: tuple[Recorder, str]
) -> None:
    """Two dispatcher processes share one queue: every delivery is sent exactly once."""
    state, base = recorder
    state.delay = 0.02
    total = 2000
    queue(engine, base, total)
    workers = [start_worker(database_url, tmp_path, f"w{i}") for i in range(2)]
    try:
        wait_until(lambda: count(engine, "delivered") == total, "all delivered")
        assert all(w.poll() is None for w in workers)
    finally:
        for worker in workers:
            stop(worker)
    assert state.overlaps == 0
    assert sorted(state.hits.values()) == [1] * total
