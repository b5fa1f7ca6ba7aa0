"""A PostgreSQL server that hangs (sockets open, nothing answered) makes clicks and postbacks
503 + Retry-After within the configured bound, not a hang; they succeed again once it answers.

The hang is a TCP proxy between clickloop and PostgreSQL that stops forwarding bytes: the
machine's PostgreSQL itself is shared and must not be stopped.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.storage import tables as t
from tests.conftest import Server, server_on
from tests.e2e.test_clicks import make_campaign, request, wait_for_link

pytestmark = pytest.mark.slow

TIMEOUT_SECONDS = 2


class HangingProxy:
    """Forwards TCP connections to `upstream`; `hang()` stops moving bytes both ways (sockets
    stay open, new connections are accepted and wait), `resume()` moves them again."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.flowing = threading.Event()
        self.flowing.set()
        self.closed = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def hang(self) -> None:
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        self.closed.set()
        self.flowing.set()
        self.listener.close()
        for sock in self.sockets:
            sock.close()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        peers = {client: server, server: client}
        with selectors.DefaultSelector() as selector:
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            while not self.closed.is_set():
                self.flowing.wait()
                for key, _ in selector.select(timeout=0.05):
                    if not self.flowing.is_set():
                        break  # hung between select and recv: leave the bytes unread
                    try:
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                        if not data:
                            raise OSError("closed")
                        peers[key.fileobj].sendall(data)  # type: ignore[index]
                    except OSError:
                        client.close()
                        server.close()
                        return


@pytest.fixture
def proxy(database_url: str) -> Iterator[HangingProxy]:
    if database_url.startswith("sqlite"):
        pytest.skip("a hung database server: PostgreSQL only")
    parts = urllib.parse.urlsplit(database_url)
    instance = HangingProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    yield instance
    instance.close()


@pytest.fixture
def proxied_server(
    database_url: str, engine: Engine, proxy: HangingProxy, tmp_path: Path
) -> Iterator[Server]:
    """`clickloop serve` whose database connections all go through the proxy."""
    parts = urllib.parse.urlsplit(database_url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{proxy.port}" if userinfo else f"127.0.0.1:{proxy.port}"
    instance = server_on(
        urllib.parse.urlunsplit(parts._replace(netloc=netloc)),
        tmp_path,
        {
            "CLICKLOOP_DATABASE_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
            "CLICKLOOP_EMBEDDED_WORKER": "false",
        },
    )
    instance.start()
    yield instance
    instance.stop()


def timed(server: Server, target: str) -> tuple[int, str | None, float]:
    """Status, Retry-After and seconds taken of one GET (the client gives up after 10 s)."""
    started = time.monotonic()
    status, headers, _ = request(server, "GET", target)
    return status, headers.get("retry-after"), time.monotonic() - started


def conversions(engine: Engine, subid: str) -> list[str]:
    with engine.connect() as conn:
        query = select(t.conversions.c.tid).where(t.conversions.c.subid == subid)
        return list(conn.scalars(query))


def test_hung_database_answers_503_then_recovers(
    proxied_server: Server, proxy: HangingProxy, engine: Engine
) -> None:
    """While PostgreSQL hangs, clicks and postbacks are 503 + Retry-After within the bound and
    /healthz answers; once it answers again, they succeed, and a retried postback is stored
    once."""
    make_campaign(engine)
    wait_for_link(proxied_server, "go")
    key = entities.get_settings(engine)["postback_key"]
    assert request(proxied_server, "GET", "/go?clickid=before")[0] == 302
    with engine.connect() as conn:
        subid = conn.execute(select(t.clicks.c.subid)).scalar_one()
    postback = f"/{key}/postback?subid={subid}&tid=during&status=lead&payout=3"

    proxy.hang()
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(
                lambda target: timed(proxied_server, target),
                ["/go?clickid=hung1", postback, "/go?clickid=hung2", "/healthz"],
            )
        )
    # Requests that arrive once the hang is known are refused at once.
    answers.append(timed(proxied_server, "/go?clickid=hung3"))
    answers.append(timed(proxied_server, postback))
    *refused, health = answers[:4]
    refused += answers[4:]
    assert health[0] == 200
    # Each waited at most the bound and the watchdog's period (and not the hang: 10 s).
    assert [status for status, _, _ in refused] == [503] * 5
    assert all(retry and retry.isdigit() for _, retry, _ in refused)
    assert max(seconds for _, _, seconds in refused) < TIMEOUT_SECONDS + 3

    proxy.resume()
    deadline = time.monotonic() + 20
    while request(proxied_server, "GET", "/go?clickid=after")[0] != 302:
        assert time.monotonic() < deadline, "clicks did not recover"
        time.sleep(0.2)
    assert request(proxied_server, "GET", postback)[0] == 200
    assert conversions(engine, subid) == ["during"]
    with engine.connect() as conn:
        ids = set(conn.scalars(select(t.clicks.c.external_id)))
        logged = conn.execute(select(func.count()).select_from(t.received_postbacks)).scalar()
    # A request answered 503 may have been committed after all, but only whole.
    assert {"before", "after"} <= ids <= {"before", "after", "hung1", "hung2", "hung3"}
    assert logged in (1, 2)


def test_server_stops_while_database_hangs(
    proxied_server: Server, proxy: HangingProxy, engine: Engine
) -> None:
    """SIGTERM while PostgreSQL hangs: the server stops instead of waiting for the database."""
    make_campaign(engine)
    wait_for_link(proxied_server, "go")
    assert request(proxied_server, "GET", "/go?clickid=before")[0] == 302
    proxy.hang()
    assert timed(proxied_server, "/go?clickid=hung")[0] == 503
    assert proxied_server.process is not None
    proxied_server.process.terminate()
    proxied_server.process.wait(timeout=30)  # raises if it hangs on


def test_readiness_follows_a_hung_database(proxied_server: Server, proxy: HangingProxy) -> None:
    """/readyz is 200 while the database commits, 503 within the bound while it hangs (and
    /healthz stays 200), and 200 again once it answers."""
    assert timed(proxied_server, "/readyz")[0] == 200
    proxy.hang()
    status, retry, seconds = timed(proxied_server, "/readyz")
    assert (status, retry) == (503, "5")
    assert seconds < TIMEOUT_SECONDS + 3
    assert timed(proxied_server, "/healthz")[0] == 200
    proxy.resume()
    deadline = time.monotonic() + 20
    while timed(proxied_server, "/readyz")[0] != 200:
        assert time.monotonic() < deadline, "readiness did not recover"
        time.sleep(0.2)
