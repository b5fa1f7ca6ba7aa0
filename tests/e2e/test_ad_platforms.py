"""The ad platforms through a running clickloop: a click from a Meta or TikTok ad, the network's
sale, and the conversion API request arriving at a local stand-in for the platform, checked
against the request shape the platform documents; and Google Ads' offline import file."""

from __future__ import annotations

import csv
import http.cookiejar
import io
import json
import re
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jsonschema
import pytest
from sqlalchemy.engine import Engine

from clickloop.services import entities, users
from clickloop.services.tokens import create_token
from tests.conftest import Server
from tests.e2e.test_api import Api
from tests.e2e.test_clicks import request as send
from tests.e2e.test_clicks import wait_for_link
from tests.e2e.test_loop import wait_for

pytestmark = pytest.mark.slow

NOW = datetime(2026, 11, 1, tzinfo=UTC)
META_TOKEN = "EAAGm0PX4ZCpsBAxSecretToken123"
TIKTOK_TOKEN = "tt-access-7d1f0c2b9e"
# A click id carrying what must be JSON-escaped: quotes, a backslash, a newline, a tab, a
# non-ASCII letter, an astral emoji and a would-be macro.
HOSTILE = 'Iw"AR\\1\n\t☃😀{payout}'
HOSTILE_UA = 'Mozilla/5.0 "quoted" \\ back é'  # header values are latin-1


@dataclass
class Receiver:
    """A platform stand-in: records each request and answers the next status in `answers`."""

    base: str = ""
    answers: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.received.append(
                {"method": "POST", "path": self.path, "headers": dict(self.headers), "body": body}
            )
            status = state.answers.pop(0) if state.answers else 200
            # A failing platform echoing the credential it got: the attempt log must mask it.
            echo = f"rejected {self.headers.get('Access-Token')} {self.path}"
            answer = (echo if status >= 400 else '{"events_received": 1}').encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def server_env() -> dict[str, str]:
    return {"CLICKLOOP_LOG_LEVEL": "info"}


@pytest.fixture
def api(request: pytest.FixtureRequest, engine: Engine) -> Api:
    """The API of a running server whose S2S may reach the local stand-ins (SSRF allowance
    written before the server and its dispatcher start)."""
    entities.update_settings(engine, {"allowed_networks": ["127.0.0.0/8"]})
    server: Server = request.getfixturevalue("server")
    return Api(server, create_token(engine, name="tests", now=NOW))


def make_campaign(engine: Engine, alias: str) -> int:
    network = entities.create_affiliate_network(
        engine, name=f"Net {alias}", now=NOW, status_trainings={"sale": ["approved"]}
    )
    offer = entities.create_offer(
        engine, name=f"Offer {alias}", url="https://offer.test/lp?s={subid}", now=NOW,
        affiliate_network_id=network,
    )  # fmt: skip
    return entities.create_campaign(
        engine, name=f"Campaign {alias}", alias=alias, now=NOW, offers=[(offer, 1)]
    )


def click(server: Server, alias: str, query: dict[str, str]) -> str:
    """A visitor's click on the campaign link; returns its subid."""
    target = f"/{alias}?{urllib.parse.urlencode(query)}"
    status, headers, _ = send(server, "GET", target, {"User-Agent": HOSTILE_UA})
    assert status == 302
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(headers["location"]).query))["s"]


def sell(server: Server, engine: Engine, subid: str, payout: str = "12.5") -> None:
    key = entities.get_settings(engine)["postback_key"]
    target = f"/{key}/postback?subid={subid}&status=approved&payout={payout}"
    assert send(server, "GET", target)[2] == b"OK"


EVENT_ID = {"type": "string", "pattern": r"^[0-9]+-sale$"}
UNIX_SECONDS = {"type": "integer", "minimum": 1_600_000_000, "maximum": 4_000_000_000}
# Meta: "Server Event Parameters", "Customer Information Parameters", "Custom Data".
META_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["data", "test_event_code"],
    "properties": {
        "test_event_code": {"const": "TEST4242"},
        "data": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": [
                    "event_name", "event_time", "event_id", "action_source", "user_data",
                    "custom_data", "event_source_url",
                ],
                "properties": {
                    "event_name": {"const": "Purchase"},
                    "event_time": UNIX_SECONDS,
                    "event_id": EVENT_ID,
                    "action_source": {"const": "website"},
                    "event_source_url": {"const": "https://shop.example/thanks"},
                    "user_data": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["fbc", "client_ip_address", "client_user_agent"],
                        "properties": {
                            "fbc": {"type": "string", "pattern": r"^fb\.1\.[0-9]{13}\."},
                            "client_ip_address": {"type": "string"},
                            "client_user_agent": {"type": "string"},
                        },
                    },
                    "custom_data": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["value", "currency"],
                        "properties": {
                            "value": {"type": "number"},
                            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                        },
                    },
                },
            },
        },
    },
}  # fmt: skip
# TikTok: Events API 2.0, POST /open_api/v1.3/event/track/ (web events).
TIKTOK_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["event_source", "event_source_id", "data"],
    "properties": {
        "event_source": {"const": "web"},
        "event_source_id": {"const": "CQ1TIKTOKPIXEL"},
        "data": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["event", "event_time", "event_id", "user", "properties"],
                "properties": {
                    "event": {"const": "Purchase"},
                    "event_time": UNIX_SECONDS,
                    "event_id": EVENT_ID,
                    "user": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["ttclid", "ip", "user_agent"],
                        "properties": {
                            "ttclid": {"type": "string"},
                            "ip": {"type": "string"},
                            "user_agent": {"type": "string"},
                        },
                    },
                    "properties": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["value", "currency"],
                        "properties": {
                            "value": {"type": "number"},
                            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                        },
                    },
                },
            },
        },
    },
}


def test_meta_conversions_api(
    api: Api, engine: Engine, receiver: Receiver, request: pytest.FixtureRequest
) -> None:
    """A sale from a Meta click is POSTed to /{pixel}/events in Meta's documented shape, with
    the fbclid in fbc, JSON-escaped; a retry after a 500 carries the same event_id; the token
    is masked in the API and the server log."""
    server: Server = request.getfixturevalue("server")
    campaign = make_campaign(engine, "meta")
    status, shown = api.call(
        "POST",
        f"/campaigns/{campaign}/ad-platform-postbacks",
        {
            "platform": "meta",
            "pixel_id": "1234567890",
            "access_token": META_TOKEN,
            "test_event_code": "TEST4242",
            "event_source_url": "https://shop.example/thanks",
            "api_base": f"{receiver.base}/v19.0",
        },
    )
    assert status == 201, shown
    assert META_TOKEN not in json.dumps(shown)
    wait_for_link(server, "meta")
    receiver.answers = [500]
    subid = click(server, "meta", {"fbclid": HOSTILE, "utm_source": "fb"})
    sell(server, engine, subid)

    wait_for(lambda: len(receiver.received) >= 2, "the request and its retry")
    first, retry = receiver.received[:2]
    assert first["body"] == retry["body"]
    assert first["path"] == f"/v19.0/1234567890/events?access_token={META_TOKEN}"
    assert first["headers"]["Content-Type"] == "application/json"
    body = json.loads(first["body"])
    jsonschema.validate(body, META_SCHEMA)
    event = body["data"][0]
    _, clicked = api.call("GET", f"/clicks/{subid}")
    _, conversions = api.call("GET", f"/conversions?subid={subid}")
    conversion = conversions["items"][0]
    assert event["event_id"] == f"{conversion['id']}-sale"
    converted = datetime.fromisoformat(conversion["converted_at"])
    assert event["event_time"] == int(converted.timestamp())
    created_ms = int(datetime.fromisoformat(clicked["created_at"]).timestamp() * 1000)
    assert event["user_data"] == {
        "fbc": f"fb.1.{created_ms}.{HOSTILE}",
        "client_ip_address": clicked["ip"],
        "client_user_agent": HOSTILE_UA,
    }
    assert event["custom_data"] == {"value": 12.5, "currency": "USD"}

    _, deliveries = api.call("GET", f"/deliveries?subid={subid}")
    wait_for(
        lambda: (
            api.call("GET", f"/deliveries?subid={subid}")[1]["items"][0]["state"] == "delivered"
        ),
        "delivered",
    )
    _, delivery = api.call("GET", f"/deliveries/{deliveries['items'][0]['id']}")
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 200]
    shown_text = json.dumps(delivery) + json.dumps(api.call("GET", f"/campaigns/{campaign}")[1])
    assert META_TOKEN not in shown_text and "access_token=***" in delivery["url"]
    assert META_TOKEN not in server.log_path.read_text()


def test_tiktok_events_api(
    api: Api, engine: Engine, receiver: Receiver, request: pytest.FixtureRequest
) -> None:
    """A sale from a TikTok click is POSTed to /event/track/ with the Access-Token header and
    the documented body; the retry keeps the event_id; the header is masked everywhere shown,
    even where the platform echoed the token in its answer."""
    server: Server = request.getfixturevalue("server")
    campaign = make_campaign(engine, "tt")
    source = entities.create_traffic_source(engine, name="TikTok", now=NOW)
    status, shown = api.call(
        "PUT",
        f"/traffic-sources/{source}/ad-platform-postback",
        {
            "platform": "tiktok",
            "pixel_id": "CQ1TIKTOKPIXEL",
            "access_token": TIKTOK_TOKEN,
            "api_base": f"{receiver.base}/open_api/v1.3",
        },
    )
    assert status == 200, shown
    assert shown["postback_headers"] == {"Access-Token": "***"}
    api.call("PATCH", f"/campaigns/{campaign}", {"traffic_source_id": source})
    wait_for_link(server, "tt")
    wait_for(lambda: api.call("GET", f"/campaigns/{campaign}")[1]["traffic_source_id"], "source")
    receiver.answers = [500]
    subid = click(server, "tt", {"ttclid": HOSTILE})
    sell(server, engine, subid, payout="7")

    wait_for(lambda: len(receiver.received) >= 2, "the request and its retry")
    first, retry = receiver.received[:2]
    assert first["body"] == retry["body"]
    assert first["path"] == "/open_api/v1.3/event/track/"
    assert first["headers"]["Access-Token"] == TIKTOK_TOKEN
    assert first["headers"]["Content-Type"] == "application/json"
    body = json.loads(first["body"])
    jsonschema.validate(body, TIKTOK_SCHEMA)
    event = body["data"][0]
    _, clicked = api.call("GET", f"/clicks/{subid}")
    assert event["user"] == {"ttclid": HOSTILE, "ip": clicked["ip"], "user_agent": HOSTILE_UA}
    assert event["properties"] == {"value": 7, "currency": "USD"}

    wait_for(
        lambda: (
            api.call("GET", f"/deliveries?subid={subid}")[1]["items"][0]["state"] == "delivered"
        ),
        "delivered",
    )
    _, deliveries = api.call("GET", f"/deliveries?subid={subid}")
    _, delivery = api.call("GET", f"/deliveries/{deliveries['items'][0]['id']}")
    assert delivery["headers"] == {"Access-Token": "***"}
    assert "rejected ***" in delivery["attempts"][0]["response"]
    everything = json.dumps(delivery) + json.dumps(api.call("GET", "/traffic-sources")[1])
    assert TIKTOK_TOKEN not in everything
    assert TIKTOK_TOKEN not in server.log_path.read_text()
    cli = server.cli("deliveries", "list", "--subid", subid, "--attempts")
    assert cli.returncode == 0 and TIKTOK_TOKEN not in cli.stdout + cli.stderr


def test_cli_sets_and_replaces_a_conversion_api_target(
    api: Api, engine: Engine, receiver: Receiver, request: pytest.FixtureRequest
) -> None:
    """`traffic-sources conversion-api` makes a TikTok target from the shell, the token read
    from stdin and never printed; a sale is POSTed as TikTok's Purchase event; run again it
    replaces the target (a Meta one); `campaigns conversion-api` adds one; bad input is named."""
    server: Server = request.getfixturevalue("server")
    campaign = make_campaign(engine, "clitt")
    entities.create_traffic_source(engine, name="TikTok shell", now=NOW)

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "clickloop.cli", *args]
        return subprocess.run(
            command, env=server.env, input=stdin, capture_output=True, text=True, timeout=60
        )

    base = f"{receiver.base}/open_api/v1.3"
    made = cli("traffic-sources", "conversion-api", "TikTok shell", "--platform", "tiktok",
               "--pixel-id", "CQ1SHELL", "--access-token-stdin", "--event", "lead=Lead",
               "--api-base", base, stdin=TIKTOK_TOKEN + "\n")  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "TikTok Events API target set" in made.stdout
    assert "Access-Token: ***" in made.stdout and TIKTOK_TOKEN not in made.stdout
    source = entities.resolve_entity(engine, "traffic_sources", "TikTok shell")
    api.call("PATCH", f"/campaigns/{campaign}", {"traffic_source_id": source})
    wait_for_link(server, "clitt")
    wait_for(lambda: api.call("GET", f"/campaigns/{campaign}")[1]["traffic_source_id"], "source")
    sell(server, engine, click(server, "clitt", {"ttclid": "E.C.P.shell"}), payout="3")
    wait_for(lambda: receiver.received, "the TikTok request")
    [sent] = receiver.received
    assert sent["headers"]["Access-Token"] == TIKTOK_TOKEN
    event = json.loads(sent["body"])["data"][0]
    assert (event["event"], event["user"]["ttclid"]) == ("Purchase", "E.C.P.shell")
    assert "lead=Lead " in entities.get_entity(engine, "traffic_sources", source)["postback_body"]

    replaced = cli("traffic-sources", "conversion-api", str(source), "--platform", "meta",
                   "--pixel-id", "998877", "--access-token", META_TOKEN,
                   "--test-event-code", "TEST42")  # fmt: skip
    assert replaced.returncode == 0, replaced.stderr
    assert "events?access_token=***" in replaced.stdout and META_TOKEN not in replaced.stdout
    stored = entities.get_entity(engine, "traffic_sources", source)
    assert stored["postback_url"].startswith("https://graph.facebook.com/v19.0/998877/events?")
    assert '"test_event_code": "TEST42"' in stored["postback_body"]
    assert stored["postback_headers"] == {}

    added = cli("campaigns", "conversion-api", "clitt", "--platform", "meta", "--pixel-id", "55",
                "--access-token-stdin", "--statuses", "sale", stdin=META_TOKEN)  # fmt: skip
    assert added.returncode == 0, added.stderr
    [postback] = entities.get_entity(engine, "campaigns", campaign)["postbacks"]
    assert (postback["method"], postback["statuses"]) == ("POST", ["sale"])

    bad = cli("traffic-sources", "conversion-api", str(source), "--platform", "meta",
              "--pixel-id", "has space", "--access-token", "x")  # fmt: skip
    assert (bad.returncode, bad.stderr.strip()) == (
        1,
        "error: pixel_id: required: letters, digits, _ or -",
    )
    missing = cli("traffic-sources", "conversion-api", str(source), "--platform", "x")
    assert missing.returncode == 2 and "--platform" in missing.stderr


def test_ad_platform_target_bad_input_is_422(api: Api, engine: Engine) -> None:
    """A missing pixel id, an unknown platform or a token with spaces is refused by name."""
    campaign = make_campaign(engine, "bad")
    path = f"/campaigns/{campaign}/ad-platform-postbacks"
    for body, field_name in (
        ({"platform": "meta", "access_token": "x"}, "pixel_id"),
        ({"platform": "snap", "pixel_id": "1", "access_token": "x"}, "platform"),
        ({"platform": "meta", "pixel_id": "1", "access_token": "a b"}, "access_token"),
        ({"platform": "meta", "pixel_id": "1/2", "access_token": "x"}, "pixel_id"),
    ):
        status, answer = api.call("POST", path, body)
        assert (status, answer["field"]) == (422, field_name), answer


def test_google_ads_export(api: Api, engine: Engine, request: pytest.FixtureRequest) -> None:
    """Sales of clicks that came with a gclid export in Google's offline conversion import
    format, from the API and the CLI alike; leads and non-gclid values stay out."""
    server: Server = request.getfixturevalue("server")
    make_campaign(engine, "gads")
    wait_for_link(server, "gads")
    sold = click(server, "gads", {"gclid": "Cj0KCQiA-abc_123"})
    sell(server, engine, sold, payout="30.25")
    hostile = click(server, "gads", {"gclid": '=HYPERLINK("x")'})
    sell(server, engine, hostile)
    key = entities.get_settings(engine)["postback_key"]
    lead = click(server, "gads", {"gclid": "Cj0LEADONLY"})
    request_lead = f"/{key}/postback?subid={lead}&status=lead&payout=1"
    assert send(server, "GET", request_lead)[2] == b"OK"

    status, text = api.call("GET", "/exports/google-ads?conversion_name=Offline%20Sale")
    assert status == 200
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == [
        "Google Click ID", "Conversion Name", "Conversion Time", "Conversion Value",
        "Conversion Currency",
    ]  # fmt: skip
    assert len(rows) == 2
    gclid, name, when, value, currency = rows[1]
    assert (gclid, name, value, currency) == ("Cj0KCQiA-abc_123", "Offline Sale", "30.25", "USD")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00", when)
    _, conversions = api.call("GET", f"/conversions?subid={sold}")
    converted = datetime.fromisoformat(conversions["items"][0]["converted_at"])
    assert when == converted.strftime("%Y-%m-%d %H:%M:%S+00:00")

    cli = server.cli("export", "google-ads", "--conversion-name", "Offline Sale")
    assert cli.returncode == 0, cli.stderr
    assert list(csv.reader(io.StringIO(cli.stdout))) == rows
    leads = api.call("GET", "/exports/google-ads?conversion_name=L&statuses=lead")[1]
    assert "Cj0LEADONLY" in leads and "Cj0KCQiA" not in leads
    status, answer = api.call("GET", "/exports/google-ads")
    assert (status, answer["field"]) == (422, "conversion_name")
    bad = server.cli("export", "google-ads", "--conversion-name", "X", "--from", "2026-13-01")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "from" in bad.stderr


def test_admin_ui_adds_a_conversion_api_and_downloads_the_google_file(
    api: Api, engine: Engine, request: pytest.FixtureRequest
) -> None:
    """The campaign page's form adds a TikTok target (its token masked on the delivery page's
    source data) and saving the campaign form keeps it; Conversions offers the Google file."""
    server: Server = request.getfixturevalue("server")
    campaign = make_campaign(engine, "ui")
    users.create_user(engine, "admin", "correct horse battery", now=NOW)
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )

    def csrf(path: str) -> tuple[str, str]:
        with opener.open(f"{server.base_url}/admin{path}", timeout=10) as answer:
            page = answer.read().decode()
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found is not None
        return found.group(1), page

    token, _ = csrf("/login")
    login = {"csrf": token, "username": "admin", "password": "correct horse battery"}
    opener.open(f"{server.base_url}/admin/login", urllib.parse.urlencode(login).encode(), 10)
    token, page = csrf(f"/campaigns/{campaign}/edit")
    assert "Ad platform conversion API" in page
    form = {
        "csrf": token,
        "platform": "tiktok",
        "pixel_id": "CQ1TIKTOKPIXEL",
        "access_token": TIKTOK_TOKEN,
        "statuses": "sale",
    }
    url = f"{server.base_url}/admin/campaigns/{campaign}/ad-platform-postbacks"
    with opener.open(url, urllib.parse.urlencode(form).encode(), 10) as answer:
        assert "Conversion API postback added" in answer.read().decode()
    _, shown = api.call("GET", f"/campaigns/{campaign}")
    [postback] = shown["postbacks"]
    assert postback["headers"] == {"Access-Token": "***"}
    assert postback["url"] == "https://business-api.tiktok.com/open_api/v1.3/event/track/"

    # Saving the campaign form as the page shows it keeps the target's body and headers.
    token, page = csrf(f"/campaigns/{campaign}/edit")
    assert 'name="pb_headers"' in page
    stored = entities.get_entity(engine, "campaigns", campaign)
    before, offer = stored["postbacks"], stored["offers"][0]["offer_id"]
    form_data = [("csrf", token), ("name", "Campaign ui"), ("alias", "ui"), ("status", "active"),
                 ("cost_model", "none"), ("cost_value", "0"), ("offer_id", str(offer)),
                 ("offer_weight", "100"), ("pb_url", before[0]["url"]), ("pb_method", "POST"),
                 ("pb_statuses", "sale"), ("pb_body", before[0]["body"]),
                 ("pb_headers", json.dumps(before[0]["headers"]))]  # fmt: skip
    opener.open(f"{server.base_url}/admin/campaigns/{campaign}",
                urllib.parse.urlencode(form_data).encode(), 10).read()  # fmt: skip
    after = entities.get_entity(engine, "campaigns", campaign)["postbacks"]
    assert [(p["id"], p["headers"], p["body"]) for p in after] == [
        (p["id"], p["headers"], p["body"]) for p in before
    ]

    _, page = csrf("/conversions")
    assert "/exports/google-ads" in page
    with opener.open(
        f"{server.base_url}/admin/exports/google-ads?conversion_name=Sale", timeout=10
    ) as answer:
        assert answer.read().decode().startswith("Google Click ID,Conversion Name,")
