"""Fuzzing the postback endpoint over HTTP: any names, values, encodings and sizes get a logged
answer, never a 500, and what was recorded before stays intact.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.storage import tables as t
from tests.conftest import Server
from tests.postback_world import World, add_clicks, make_world

KNOWN_NAMES = [
    "subid", "SUBID", "status", "Status", "payout", "revenue", "currency", "tid", "cost", "date",
    "return", "from", "ignore_status", "sale_status", "lead_status", "vip_status", "keyword",
    "sub_id_1", "sub_id_30", "external_id", "source",
]  # fmt: skip
SUBIDS = ["f1", "f2", "nosuch", ""]
VALUES = st.one_of(
    st.sampled_from(["sale", "lead", "rejected", "approved", "img", "OK", "eur", "usd", "XYZ"]),
    st.sampled_from(SUBIDS),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.lists(st.integers(-1000, 1000).map(str), max_size=4).map(",".join),
    st.text(max_size=40),
    st.text(min_size=300, max_size=3000),
    st.sampled_from(["1700000000", "2024-03-01T12:00:00Z", "{date}", "0", "-1"]),
)
PAIRS = st.lists(
    st.tuples(st.one_of(st.sampled_from(KNOWN_NAMES), st.text(max_size=80)), VALUES), max_size=12
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes, dict[str, str]]:
    """(method, query, body, headers) in one of several encodings."""
    pairs = draw(PAIRS)
    kind = draw(st.sampled_from(["get", "form", "json", "raw-query", "raw-body"]))
    if kind == "get":
        return "GET", urllib.parse.urlencode(pairs), b"", {}
    if kind == "form":
        body = urllib.parse.urlencode(pairs).encode()
        return "POST", "", body, {"Content-Type": "application/x-www-form-urlencoded"}
    if kind == "json":
        document: Any = draw(st.one_of(st.just(dict(pairs)), st.just([p[1] for p in pairs])))
        body = json.dumps(document).encode()
        return "POST", "subid=f1", body, {"Content-Type": "application/json"}
    raw = draw(st.binary(max_size=2000))
    if kind == "raw-query":
        return "GET", urllib.parse.quote_from_bytes(raw, safe="=&"), b"", {}
    content_type = draw(st.sampled_from(["application/json", "text/plain", ""]))
    return "POST", "", raw, {"Content-Type": content_type} if content_type else {}


@pytest.fixture
def world(engine: Engine) -> World:
    world = make_world(engine)
    add_clicks(engine, world, ["f1", "f2", "keep"], offer_id=world.upsell_offer_id)
    return world


def snapshot(engine: Engine) -> tuple[int, list[dict[str, Any]]]:
    """The log size, and the conversion of the click no fuzzed request can name."""
    with engine.connect() as conn:
        logged = conn.execute(select(func.count()).select_from(t.received_postbacks)).scalar_one()
        kept = conn.execute(select(t.conversions).where(t.conversions.c.subid == "keep"))
        return int(logged), [dict(row._mapping) for row in kept]


def send(server: Server, method: str, target: str, body: bytes, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, target, body=body or None, headers=headers)
        answer = conn.getresponse()
        answer.read()
        return answer.status
    finally:
        conn.close()


def test_fuzzed_postbacks_are_answered_and_logged(
    world: World, engine: Engine, server: Server
) -> None:
    """No fuzzed request gets a 500; each adds exactly one log row; the kept sale is untouched."""
    key = entities.get_settings(engine)["postback_key"]
    assert send(server, "GET", f"/{key}/postback?subid=keep&status=sale&payout=9&tid=s", b"", {})
    before_log, kept = snapshot(engine)
    assert len(kept) == 1

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(requests())
    def check(request: tuple[str, str, bytes, dict[str, str]]) -> None:
        method, query, body, headers = request
        logged, _ = snapshot(engine)
        status = send(server, method, f"/{key}/postback?{query}", body, headers)
        assert status == 200, (status, request)
        assert snapshot(engine)[0] == logged + 1

    check()
    after_log, kept_after = snapshot(engine)
    assert kept_after == kept
    assert after_log > before_log
    with engine.connect() as conn:  # every stored conversion still reads back cleanly
        for row in conn.execute(select(t.conversions)):
            assert row.payout is not None and row.type
