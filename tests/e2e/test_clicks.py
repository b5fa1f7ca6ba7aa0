"""Campaign links against a real server: redirect, stored click, 404s, durability."""

from __future__ import annotations

import http.client
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from clickloop.services import campaigns, entities
from clickloop.storage import tables as t
from tests.conftest import Server

NOW = datetime(2026, 11, 1, tzinfo=UTC)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)


def make_campaign(engine: Engine, alias: str = "go", **campaign: object) -> int:
    source = entities.create_traffic_source(
        engine,
        name=f"ExoClick {alias}",
        now=NOW,
        parameters=[
            {"name": "external_id", "param": "clickid", "macro": "{conversions_tracking}"},
            {"name": "sub_id_1", "param": "zone", "macro": "{zoneid}"},
            {"name": "cost", "param": "cost", "macro": "{cost}"},
            {"name": "device_id", "param": "did", "macro": "{did}"},
        ],
    )
    network = entities.create_affiliate_network(
        engine, name=f"Net {alias}", now=NOW, offer_params="&sub1={subid}&ext={external_id}"
    )
    offer = entities.create_offer(
        engine,
        name=f"Offer {alias}",
        url="https://offer.example/lp?z={sub_id_1}&d={device_id}",
        now=NOW,
        affiliate_network_id=network,
    )
    fields: dict[str, object] = {"cost_model": "cpc_param"} | campaign
    return entities.create_campaign(
        engine,
        name=f"C {alias}",
        alias=alias,
        now=NOW,
        offers=[(offer, 1)],
        traffic_source_id=source,
        **fields,
    )


def wait_for_link(server: Server, alias: str, status: int = 200) -> None:
    """The server's processes each poll config changes about once a second; wait until they
    see this one: 8 answers in a row, each on a new connection (which the kernel hands to any
    of them)."""
    deadline = time.monotonic() + 10
    streak = 0
    while time.monotonic() < deadline:
        if request(server, "HEAD", f"/{alias}")[0] == status:
            streak += 1
            if streak == 8:
                return
            continue
        streak = 0
        time.sleep(0.1)
    raise AssertionError(f"/{alias} never answered {status}")


def request(
    server: Server, method: str, target: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, target, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        conn.close()


def stored_click(engine: Engine, subid: str) -> dict[str, object] | None:
    with engine.connect() as conn:
        row = conn.execute(select(t.clicks).where(t.clicks.c.subid == subid)).first()
    return dict(row._mapping) if row else None


def test_click_redirects_and_stores_mapped_params(server: Server, engine: Engine) -> None:
    """The 302 carries the new subid in the offer URL, and the click row holds every field."""
    make_campaign(engine)
    wait_for_link(server, "go")
    status, headers, _ = request(
        server,
        "GET",
        "/go?clickid=ext%201&zone=77&cost=0.012&did=dev-9&utm=x",
        {"User-Agent": IPHONE, "Referer": "https://ref.test/", "Accept-Language": "de-DE,de;q=0.9"},
    )
    assert status == 302
    assert headers["cache-control"] == "no-store"
    location = urllib.parse.urlsplit(headers["location"])
    query = dict(urllib.parse.parse_qsl(location.query))
    assert location.netloc == "offer.example"
    assert query["z"] == "77" and query["d"] == "dev-9" and query["ext"] == "ext 1"
    subid = query["sub1"]
    assert f"_subid={subid}" in headers["set-cookie"]
    click = stored_click(engine, subid)
    assert click is not None
    assert click["external_id"] == "ext 1" and click["sub_id_1"] == "77"
    assert str(click["cost"]) == "0.012000"
    assert click["extra"] == {"device_id": "dev-9", "utm": "x"}
    assert click["referrer"] == "https://ref.test/" and click["language"] == "de-DE"
    assert (click["os"], click["device_type"]) == ("iOS", "mobile")


def test_clicks_with_different_parameters_commit_together(server: Server, engine: Engine) -> None:
    """A burst of links that set different fields (rows of different shapes in one batch) is
    stored field by field; a field the link did not set is NULL and renders empty."""
    make_campaign(engine)
    wait_for_link(server, "go")
    targets = [
        "/go?zone=1&clickid=a",
        "/go?clickid=b&zone=2&did=x",
        "/go?keyword=k&sub_id_9=s9",
        "/go",
        "/go?cost=0.5&zone=5",
    ] * 8
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        answers = list(pool.map(lambda target: request(server, "GET", target), targets))
    for target, (status, headers, _) in zip(targets, answers, strict=True):
        assert status == 302
        sent = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(target).query))
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(headers["location"]).query, True))
        assert query["z"] == sent.get("zone", "") and query["d"] == sent.get("did", "")
        click = stored_click(engine, query["sub1"])
        assert click is not None
        assert click["sub_id_1"] == sent.get("zone") and click["external_id"] == sent.get("clickid")
        assert click["keyword"] == sent.get("keyword") and click["sub_id_9"] == sent.get("sub_id_9")
        assert click["cost"] == (Decimal(sent["cost"]) if "cost" in sent else None)
        assert click["extra"] == ({"device_id": sent["did"]} if "did" in sent else None)


def test_unknown_and_paused_links_answer_404_and_record_nothing(
    server: Server, engine: Engine
) -> None:
    """A link that does not exist or is paused is a 404 with a short page."""
    campaign = make_campaign(engine, alias="paused-one")
    wait_for_link(server, "paused-one")
    campaigns.set_status(engine, [campaign], "paused")
    wait_for_link(server, "paused-one", status=404)
    for target in ("/paused-one?clickid=1", "/nothing-here", "/a/b/c"):
        status, headers, body = request(server, "GET", target)
        assert status == 404 and headers["cache-control"] == "no-store" and body
    with engine.connect() as conn:
        assert conn.execute(select(t.clicks)).first() is None


HOSTILE_QUERIES = [
    "/go?" + "&".join(f"p{n}=v" for n in range(5000)),
    "/go?zone=" + "9" * 60000,
    "/go?zone=%ZZ%ff%fe%00&clickid=%0d%0aSet-Cookie:%20evil=1",
    "/go?did=a%22%3E%3Cscript%3E&zone=%E2%80%AE",
    "/go?=&&&==&zone",
]


@pytest.mark.parametrize("target", HOSTILE_QUERIES)
def test_hostile_queries_still_redirect_safely(server: Server, engine: Engine, target: str) -> None:
    """Huge, broken and injecting queries get a clean 302 and a stored click, never a 500."""
    make_campaign(engine)
    wait_for_link(server, "go")
    status, headers, _ = request(server, "GET", target)
    assert status == 302
    assert "evil" not in headers.get("set-cookie", "")
    location = headers["location"]
    assert all(ch not in location for ch in '\r\n "<>')
    subid = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))["sub1"]
    assert stored_click(engine, subid) is not None


def test_head_and_other_methods(server: Server, engine: Engine) -> None:
    """HEAD confirms a live link without counting a click; POST is not a click."""
    make_campaign(engine)
    wait_for_link(server, "go")
    assert request(server, "HEAD", "/go")[0] == 200
    status, headers, _ = request(server, "POST", "/go")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    with engine.connect() as conn:
        assert conn.execute(select(t.clicks)).first() is None


def test_missing_host_header(server: Server, engine: Engine) -> None:
    """An HTTP/1.0 request without Host is still served."""
    import socket

    make_campaign(engine)
    wait_for_link(server, "go")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /go?zone=1 HTTP/1.0\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 302")


def test_the_server_folds_its_clicks_into_the_report_cubes(server: Server, engine: Engine) -> None:
    """SQLite: the server's follower moves the cubes' watermark past the clicks within a few
    seconds, no report asking, and the campaign cube counts them (PostgreSQL adds them in the
    click batch itself)."""
    campaign = make_campaign(engine)
    wait_for_link(server, "go")
    for _ in range(5):
        assert request(server, "GET", "/go?zone=1")[0] == 302
    cube = t.report_cubes["campaigns"].c
    counted = select(func.coalesce(func.sum(cube.n), 0)).where(cube.campaign_id == campaign)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(counted).scalar_one() == 5:
                return
        time.sleep(0.1)
    raise AssertionError("the cubes never counted the clicks")
