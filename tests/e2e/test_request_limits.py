"""Unfinished requests and too many connections against a real server: 408, 503, keep-alive."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.storage import tables as t
from tests.conftest import Server
from tests.e2e.test_clicks import make_campaign, wait_for_link
from tests.postback_world import add_clicks, make_world

pytestmark = pytest.mark.slow

TIMEOUT = 1  # CLICKLOOP_REQUEST_TIMEOUT_SECONDS of these servers
CAP = 6  # CLICKLOOP_MAX_CONNECTIONS of the server of the cap test


@pytest.fixture
def server_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Short request timeout; a test asks for other settings with an indirect parameter."""
    env = {"CLICKLOOP_REQUEST_TIMEOUT_SECONDS": str(TIMEOUT)}
    env.update(getattr(request, "param", {}))
    return env


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def trickle_until_answered(sock: socket.socket, pieces: list[bytes], every: float) -> bytes:
    """Send one piece every `every` seconds (slowloris) until the server answers or closes."""
    sock.settimeout(every)
    for piece in pieces:
        try:
            sock.sendall(piece)
        except OSError:
            break
        try:
            first = sock.recv(65536)
        except TimeoutError:
            continue
        sock.settimeout(10)
        return first + read_answer(sock)
    raise AssertionError("the server kept waiting for the rest of the request")


def test_a_trickled_head_gets_408_and_is_closed(server: Server, engine: Engine) -> None:
    """A head sent a header every 0.2 s (slowloris) is cut off with 408 after the timeout."""
    make_campaign(engine, "go")
    wait_for_link(server, "go")
    started = time.monotonic()
    with connect(server) as sock:
        sock.sendall(b"GET /go?clickid=slow HTTP/1.1\r\nHost: x\r\n")
        answer = trickle_until_answered(sock, [b"X-Slow: %d\r\n" % i for i in range(100)], 0.2)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in answer.lower()
    assert time.monotonic() - started < TIMEOUT + 5
    assert _count(engine, t.clicks) == 0


def test_a_silent_connection_gets_408_and_is_closed(server: Server) -> None:
    """A connection that never sends a request is answered 408 and closed."""
    with connect(server) as sock:
        assert read_answer(sock).startswith(b"HTTP/1.1 408 ")


def send_half_a_postback(engine: Engine, sock: socket.socket) -> None:
    """The head and the first 40 of the 100 bytes of a postback body for a click that exists."""
    world = make_world(engine)
    add_clicks(engine, world, ["c1"], offer_id=world.plain_offer_id)
    key = entities.get_settings(engine)["postback_key"]
    body = b"subid=c1&status=sale&payout=10&pad=" + b"x" * 64
    sock.sendall(
        b"POST /%s/postback HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
        % (key.encode(), len(body))
        + body[:40]
    )


def test_half_a_postback_body_gets_408_and_records_nothing(server: Server, engine: Engine) -> None:
    """A POST whose body stops half-way is answered 408 and no postback is processed."""
    with connect(server) as sock:
        send_half_a_postback(engine, sock)
        assert read_answer(sock).startswith(b"HTTP/1.1 408 ")
    assert _count(engine, t.received_postbacks) == 0 and _count(engine, t.conversions) == 0


def test_a_postback_body_cut_by_the_client_records_nothing(server: Server, engine: Engine) -> None:
    """A client that hangs up in the middle of a POST body leaves no postback behind."""
    with connect(server) as sock:
        send_half_a_postback(engine, sock)
        time.sleep(0.2)
    time.sleep(TIMEOUT + 0.5)
    assert _count(engine, t.received_postbacks) == 0 and _count(engine, t.conversions) == 0


def test_keep_alive_clients_and_split_heads_are_unaffected(server: Server, engine: Engine) -> None:
    """Requests on one connection over several timeouts, and a head in pieces, are answered."""
    make_campaign(engine, "go")
    wait_for_link(server, "go")
    with connect(server) as sock:
        for number in range(4):
            sock.sendall(b"GET /go?clickid=k%d HTTP/1.1\r\nHost: x\r\n\r\n" % number)
            assert _read_head(sock).startswith(b"HTTP/1.1 302 ")
            time.sleep(TIMEOUT * 0.6)
        for piece in (b"GET /go?clickid=", b"split HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
            sock.sendall(piece)
            time.sleep(TIMEOUT * 0.2)
        assert _read_head(sock).startswith(b"HTTP/1.1 302 ")
    assert _count(engine, t.clicks) == 5


def test_a_request_stalled_before_its_url_gets_408(server: Server, engine: Engine) -> None:
    """After an answer, a request stopping at "GE" (which stops keep-alive's timer) gets 408."""
    make_campaign(engine, "go")
    wait_for_link(server, "go")
    with connect(server) as sock:
        sock.sendall(b"GET /go HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_head(sock).startswith(b"HTTP/1.1 302 ")
        sock.sendall(b"GE")
        assert read_answer(sock).startswith(b"HTTP/1.1 408 ")


@pytest.mark.parametrize(
    "server_env", [{"CLICKLOOP_MAX_CONNECTIONS": str(CAP)}], indirect=True, ids=["cap"]
)
def test_connections_over_the_cap_get_503_until_one_closes(server: Server, engine: Engine) -> None:
    """With the cap reached a new connection is answered 503; once one closes, one is served."""
    make_campaign(engine, "go")
    wait_for_link(server, "go")
    held = [connect(server) for _ in range(CAP)]
    try:
        for sock in held:  # each is accepted and served
            sock.sendall(b"GET /go HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_head(sock).startswith(b"HTTP/1.1 302 ")
        with connect(server) as extra:
            extra.sendall(b"GET /go HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_answer(extra).startswith(b"HTTP/1.1 503 ")
        held.pop().close()
        time.sleep(0.2)
        with connect(server) as extra:
            extra.sendall(b"GET /go HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_head(extra).startswith(b"HTTP/1.1 302 ")
    finally:
        for sock in held:
            sock.close()


def _read_head(sock: socket.socket) -> bytes:
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {received!r}"
        received += chunk
    return received


def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
