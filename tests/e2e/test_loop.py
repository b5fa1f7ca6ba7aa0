"""The whole loop as users drive it: a traffic source's click, the network's postback, the S2S
postback arriving at the source's real HTTP endpoint, and all of it visible through the API."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler

import pytest
from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.services.tokens import create_token
from tests.conftest import Server, http_endpoint
from tests.e2e.test_api import Api
from tests.e2e.test_clicks import request, wait_for_link

NOW = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def request_fixture(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    return request


@pytest.fixture
def source_endpoint() -> Iterator[tuple[list[str], str]]:
    """A traffic source's S2S endpoint that answers like ExoClick and records every request."""
    received: list[str] = []

    def answer(request: BaseHTTPRequestHandler) -> tuple[int, bytes]:
        received.append(request.path)
        return 200, b"OK"

    with http_endpoint(answer) as base:
        yield received, base


def wait_for(condition: object, what: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_click_postback_s2s_loop(
    request_fixture: pytest.FixtureRequest, engine: Engine, source_endpoint: tuple[list[str], str]
) -> None:
    """A sale reported by the network reaches the traffic source within seconds, exactly once."""
    received, endpoint = source_endpoint
    # The S2S target is on loopback, which is refused unless allowed (SSRF): allow it before
    # the server (and its embedded dispatcher) starts.
    entities.update_settings(engine, {"allowed_networks": ["127.0.0.0/8"]})
    server: Server = request_fixture.getfixturevalue("server")
    source = entities.create_traffic_source(
        engine,
        name="ExoClick-like",
        now=NOW,
        parameters=[{"name": "external_id", "param": "clickid", "macro": "{conversions_tracking}"}],
        postback_url=f"{endpoint}/conv?cid={{external_id}}&value={{payout}}&st={{status}}",
        postback_statuses=["sale"],
        response_must_contain="OK",
    )
    network = entities.create_affiliate_network(
        engine,
        name="Net",
        now=NOW,
        offer_params="&sub1={subid}",
        status_trainings={"sale": ["approved"]},
    )
    offer = entities.create_offer(
        engine, name="Offer", url="https://offer.test/lp", now=NOW, affiliate_network_id=network
    )
    entities.create_campaign(
        engine, name="Loop", alias="loop", now=NOW, offers=[(offer, 1)], traffic_source_id=source
    )
    wait_for_link(server, "loop")

    status, headers, _ = request(server, "GET", "/loop?clickid=EXO-42")
    assert status == 302
    subid = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(headers["location"]).query))["sub1"]
    key = entities.get_settings(engine)["postback_key"]

    lead = f"/{key}/postback?subid={subid}&status=pending&lead_status=pending&payout=3"
    assert request(server, "GET", lead)[2] == b"OK"
    sale = f"/{key}/postback?subid={subid}&status=approved&payout=3.75&return=done"
    started = time.monotonic()
    assert request(server, "GET", sale)[2] == b"done"
    wait_for(lambda: received, "the S2S postback")
    assert time.monotonic() - started < 5
    assert received == ["/conv?cid=EXO-42&value=3.75&st=sale"]
    assert request(server, "GET", sale)[2] == b"done"  # a duplicate: no second S2S

    api = Api(server, create_token(engine, name="loop", now=NOW))
    _, conversions = api.call("GET", f"/conversions?subid={subid}")
    assert [(c["type"], c["payout"]) for c in conversions["items"]] == [("sale", "3.750000")]
    _, log = api.call("GET", f"/received-postbacks?subid={subid}")
    assert [entry["outcome"] for entry in log["items"]] == ["duplicate", "updated", "accepted"]
    _, deliveries = api.call("GET", "/deliveries")
    wait_for(lambda: api.call("GET", "/deliveries")[1]["items"][0]["state"] == "delivered", "state")
    assert len(deliveries["items"]) == 1
    today = datetime.now(UTC).date()
    _, report = api.call("GET", f"/reports?group_by=campaign&from={today}&to={today}")
    assert report["totals"]["clicks"] == 1 and report["totals"]["revenue"] == "3.750000"
    time.sleep(1.5)
    assert len(received) == 1
