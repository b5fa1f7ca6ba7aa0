"""Long campaign links and postbacks against a real server: stored up to the documented bound."""

from __future__ import annotations

import http.client
import socket
import urllib.parse

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.storage import tables as t
from tests.conftest import Server
from tests.e2e.test_clicks import make_campaign, request, stored_click, wait_for_link
from tests.postback_world import add_clicks, make_world

pytestmark = pytest.mark.slow

BOUND = 1024 * 1024  # the longest request target read (docs/clicks.md)
PREFIX = "/go?clickid=ext1&zone=" + "7" * 600 + "&long="


def _target(length: int) -> str:
    """A campaign link of `length` bytes: its parameters first, then a long one appended."""
    return PREFIX + "y" * (length - len(PREFIX))


@pytest.mark.parametrize("length", [10 * 1024, 70 * 1024, BOUND], ids=["10k", "70k", "bound"])
def test_long_links_are_clicks(server: Server, engine: Engine, length: int) -> None:
    """A link up to the bound redirects and stores its click, values cut as documented."""
    make_campaign(engine)
    wait_for_link(server, "go")
    status, headers, _ = request(server, "GET", _target(length))
    assert status == 302
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(headers["location"]).query))
    assert query["ext"] == "ext1" and query["z"] == "7" * 500
    click = stored_click(engine, query["sub1"])
    assert click is not None
    assert click["external_id"] == "ext1" and click["sub_id_1"] == "7" * 500
    assert click["extra"] == {"long": "y" * 500}


def test_a_link_over_the_bound_is_414(server: Server, engine: Engine) -> None:
    """One byte over the bound is answered 414 (read to its end, then closed); no click."""
    make_campaign(engine)
    wait_for_link(server, "go")
    status, headers, body = request(server, "GET", _target(BOUND + 1))
    assert (status, body) == (414, b"Request-URI Too Long")
    assert headers["connection"] == "close"
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.clicks)).scalar_one() == 0


def test_a_path_over_64_kib_is_414(server: Server, engine: Engine) -> None:
    """A path (before the query) over 64 KiB is answered 414, while a 60 KiB one is a 404."""
    make_campaign(engine)
    wait_for_link(server, "go")
    assert request(server, "GET", "/" + "p" * 60 * 1024)[0] == 404
    assert request(server, "GET", "/" + "p" * 70 * 1024 + "?clickid=1")[0] == 414


def test_keep_alive_continues_after_a_long_link(server: Server, engine: Engine) -> None:
    """After a 70 KiB link the same connection serves the next, short one."""
    make_campaign(engine)
    wait_for_link(server, "go")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.sock = sock
        for target in (_target(70 * 1024), "/go?clickid=short"):
            conn.request("GET", target)
            answer = conn.getresponse()
            answer.read()
            assert answer.status == 302
    with engine.connect() as conn2:
        assert conn2.execute(select(func.count()).select_from(t.clicks)).scalar_one() == 2


def test_long_postbacks_are_read_as_documented(server: Server, engine: Engine) -> None:
    """A 70 KiB postback query and a 70 KiB body convert; what follows 8 KiB/64 KiB is unread."""
    world = make_world(engine)
    add_clicks(engine, world, ["c1", "c2"], offer_id=world.plain_offer_id)
    key = entities.get_settings(engine)["postback_key"]
    pad = "&pad=" + "p" * 70 * 1024
    status, _, body = request(
        server, "GET", f"/{key}/postback?subid=c1&status=sale&payout=3{pad}&payout=9"
    )
    assert (status, body) == (200, b"OK")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request(
        "POST",
        f"/{key}/postback",
        body=f"subid=c2&status=lead&payout=2{pad}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    answer = conn.getresponse()
    assert (answer.status, answer.read()) == (200, b"OK")
    conn.close()
    with engine.connect() as db:
        payouts = dict(db.execute(select(t.conversions.c.subid, t.conversions.c.payout)).all())
        log = t.received_postbacks.c
        logged = db.execute(select(log.method, log.query, log.body).order_by(log.id)).all()
    assert {subid: str(payout) for subid, payout in payouts.items()} == {
        "c1": "3.000000",
        "c2": "2.000000",
    }
    assert [(m, len(q), len(b)) for m, q, b in logged] == [
        ("GET", len(f"subid=c1&status=sale&payout=3{pad}&payout=9"), 0),
        ("POST", 0, 64 * 1024),
    ]
