"""S2S as a user changes things under it, through a real server and its embedded dispatcher: an
allowed network, a corrected S2S URL, and the sent-postback log by the subid that triggered it."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.services.tokens import create_token
from tests.conftest import Server, free_port
from tests.e2e.test_api import Api
from tests.e2e.test_clicks import request, wait_for_link
from tests.e2e.test_loop import source_endpoint, wait_for

NOW = datetime(2026, 11, 1, tzinfo=UTC)
__all__ = ["source_endpoint"]  # the receiver fixture, used by name

pytestmark = pytest.mark.slow


def set_up(
    engine: Engine, server: Server, postback_url: str
) -> tuple[Api, int, Callable[[str], str]]:
    """A source with this S2S URL and a campaign using it; returns the API, the source id and a
    function that makes a click with a given click id, converts it, and returns its subid."""
    source = entities.create_traffic_source(
        engine,
        name="Source",
        now=NOW,
        parameters=[{"name": "external_id", "param": "clickid"}],
        postback_url=postback_url,
    )
    offer = entities.create_offer(
        engine, name="Offer", url="https://offer.test/?s={subid}", now=NOW
    )
    entities.create_campaign(
        engine, name="Camp", alias="camp", now=NOW, offers=[(offer, 1)], traffic_source_id=source
    )
    wait_for_link(server, "camp")
    key = entities.get_settings(engine)["postback_key"]

    def convert(click_id: str) -> str:
        status, headers, _ = request(server, "GET", f"/camp?clickid={click_id}")
        assert status == 302
        location = urllib.parse.urlsplit(headers["location"])
        subid = urllib.parse.parse_qs(location.query)["s"][0]
        postback = f"/{key}/postback?subid={subid}&status=sale&payout=2"
        assert request(server, "GET", postback)[0] == 200
        return subid

    return Api(server, create_token(engine, name="s2s", now=NOW)), source, convert


def deliveries(api: Api, query: str = "") -> list[dict[str, object]]:
    status, body = api.call("GET", f"/deliveries{query}")
    assert status == 200, body
    items: list[dict[str, object]] = body["items"]
    return items


def test_allowed_network_change_reaches_the_dispatcher_at_once(
    engine: Engine, server: Server, source_endpoint: tuple[list[str], str]
) -> None:
    """A conversion right after allowing the target's network is delivered, not refused."""
    received, endpoint = source_endpoint
    api, _, convert = set_up(engine, server, f"{endpoint}/pb?cid={{external_id}}")
    status, _ = api.call("PATCH", "/settings", {"allowed_networks": ["127.0.0.0/8"]})
    assert status == 200
    convert("RIGHT-AFTER")
    wait_for(lambda: received, "the S2S postback", seconds=10)
    assert received == ["/pb?cid=RIGHT-AFTER"]
    wait_for(lambda: deliveries(api)[0]["state"] == "delivered", "delivered state")


def test_refused_delivery_stays_queued_until_the_network_is_allowed(
    engine: Engine, server: Server, source_endpoint: tuple[list[str], str]
) -> None:
    """Refused (loopback not allowed) keeps the delivery queued; allowing it sends it."""
    received, endpoint = source_endpoint
    api, _, convert = set_up(engine, server, f"{endpoint}/pb?cid={{external_id}}")
    convert("REFUSED-FIRST")
    wait_for(lambda: (deliveries(api) or [{}])[0].get("attempts", 0) >= 1, "a refused attempt")
    [delivery] = deliveries(api)
    assert delivery["state"] == "queued" and str(delivery["last_error"]).startswith("ssrf")
    assert not received
    status, _ = api.call("PATCH", "/settings", {"allowed_networks": ["127.0.0.0/8"]})
    assert status == 200
    wait_for(lambda: received, "the S2S postback once allowed", seconds=10)
    assert received == ["/pb?cid=REFUSED-FIRST"]


def test_resend_rerendered_uses_the_corrected_url(
    engine: Engine, server: Server, source_endpoint: tuple[list[str], str]
) -> None:
    """After the source's wrong URL (nothing listening) is fixed, a rerendered resend sends the
    new URL and supersedes the old delivery, which stops retrying; a plain resend sends what
    was stored."""
    received, endpoint = source_endpoint
    entities.update_settings(engine, {"allowed_networks": ["127.0.0.0/8"]})
    wrong = f"http://127.0.0.1:{free_port()}/wrong?cid={{external_id}}"
    api, source, convert = set_up(engine, server, wrong)
    convert("FIX-ME")
    wait_for(lambda: deliveries(api)[0]["attempts"] >= 2, "two failed attempts")
    [old] = deliveries(api)
    assert old["state"] == "queued"  # retrying the wrong URL
    fixed = {"postback_url": f"{endpoint}/right?cid={{external_id}}"}
    assert api.call("PATCH", f"/traffic-sources/{source}", fixed)[0] == 200

    status, body = api.call("POST", f"/deliveries/{old['id']}/resend", {"rerender": True})
    assert status == 200, body
    [new_id] = body["delivery_ids"]
    assert body["queued"] == 1 and new_id != old["id"]
    wait_for(lambda: received == ["/right?cid=FIX-ME"], "the corrected S2S postback")
    listed = {d["id"]: d for d in deliveries(api)}
    assert listed[old["id"]]["state"] == "superseded"
    assert listed[old["id"]]["last_error"] == f"superseded by delivery {new_id}"
    assert listed[new_id]["url"] == f"{endpoint}/right?cid=FIX-ME"
    wait_for(lambda: api.call("GET", f"/deliveries/{new_id}")[1]["state"] == "delivered", "sent")

    status, body = api.call("POST", f"/deliveries/{new_id}/resend", {})
    assert (status, body["delivery_ids"]) == (200, [new_id])
    wait_for(lambda: received.count("/right?cid=FIX-ME") == 2, "the plain resend")
    status, body = api.call("POST", f"/deliveries/{new_id}/resend", {"rerender": "yes"})
    assert (status, body["field"]) == (422, "rerender")


def test_log_names_and_filters_by_the_triggering_subid(
    engine: Engine, server: Server, source_endpoint: tuple[list[str], str]
) -> None:
    """Each delivery shows the subid of the click that triggered it, and ?subid= filters on it."""
    received, endpoint = source_endpoint
    entities.update_settings(engine, {"allowed_networks": ["127.0.0.0/8"]})
    api, _, convert = set_up(engine, server, f"{endpoint}/pb?cid={{external_id}}")
    first, second = convert("A"), convert("B")
    wait_for(lambda: len(received) == 2, "both S2S postbacks")
    assert [d["subid"] for d in deliveries(api)] == [second, first]
    [only] = deliveries(api, f"?subid={first}")
    assert only["subid"] == first and only["url"].endswith("cid=A")
    assert deliveries(api, "?subid=nosuchsubid") == []
    status, one = api.call("GET", f"/deliveries/{only['id']}")
    assert status == 200 and one["subid"] == first
