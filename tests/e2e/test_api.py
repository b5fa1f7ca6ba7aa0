"""The admin REST API against a real server: auth, CRUD, validation, pagination, exports."""

from __future__ import annotations

import csv
import io
import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from clickloop.services.tokens import create_token
from tests.conftest import Server
from tests.e2e.test_clicks import request, wait_for_link

NOW = datetime(2026, 11, 1, tzinfo=UTC)


class Api:
    def __init__(self, server: Server, token: str) -> None:
        self.base = f"{server.base_url}/api/v1"
        self.token = token

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        token: str | None = None,
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        req.add_header("Authorization", f"Bearer {token if token is not None else self.token}")
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as answer:
                text = answer.read()
                status = answer.status
                kind = answer.headers.get("content-type", "")
        except urllib.error.HTTPError as error:
            text, status, kind = error.read(), error.code, error.headers.get("content-type", "")
        return status, json.loads(text) if "json" in kind else text.decode()


@pytest.fixture
def server_env() -> dict[str, str]:
    # The delivery tests claim and record deliveries themselves: an embedded dispatcher polling
    # the same outbox could claim one first (it did once in a full run).
    return {"CLICKLOOP_EMBEDDED_WORKER": "false"}


@pytest.fixture
def api(server: Server, engine: Engine) -> Api:
    return Api(server, create_token(engine, name="tests", now=NOW))


def test_tokens_are_required(api: Api) -> None:
    """No token, a wrong token and a non-bearer scheme all get 401 with a JSON error."""
    for token in ("", "clk_wrong", "Basic abc"):
        status, body = api.call("GET", "/campaigns", token=token)
        assert status == 401 and body["code"] == "unauthorized"


def test_openapi_document_is_served(api: Api) -> None:
    """The OpenAPI document is public and describes the routes."""
    with urllib.request.urlopen(f"{api.base}/openapi.json", timeout=5) as answer:
        document = json.loads(answer.read())
    assert document["openapi"].startswith("3.1") and "/campaigns" in document["paths"]


def test_full_setup_through_the_api(api: Api, server: Server) -> None:
    """Create a source, network, offer and campaign; the link works at once; pausing stops it."""
    status, source = api.call(
        "POST",
        "/traffic-sources",
        {
            "name": "PropellerAds",
            "parameters": [{"name": "external_id", "param": "visitor_id"}],
            "postback_url": "https://ad.propellerads.com/conversion.php?visitor_id={external_id}",
        },
    )
    assert status == 201, source
    status, network = api.call(
        "POST",
        "/affiliate-networks",
        {
            "name": "Admitad",
            "offer_params": "&subid={subid}",
            "status_trainings": {"sale": ["approved"]},
        },
    )
    assert status == 201, network
    status, offer = api.call(
        "POST",
        "/offers",
        {
            "name": "Shop",
            "url": "https://shop.test/",
            "affiliate_network_id": network["id"],
            "payout": 0.1,
            "currency": "eur",
        },
    )
    assert status == 201 and offer["payout"] == "0.100000" and offer["currency"] == "EUR"
    status, campaign = api.call(
        "POST",
        "/campaigns",
        {
            "name": "Launch",
            "alias": "launch",
            "traffic_source_id": source["id"],
            "offers": [{"offer_id": offer["id"], "weight": 100}],
            "postbacks": [{"url": "https://crm.test/hook?c={subid}", "statuses": ["sale"]}],
        },
    )
    assert status == 201, campaign
    assert campaign["offers"] == [{"offer_id": offer["id"], "weight": 100}]
    assert campaign["postbacks"][0]["statuses"] == ["sale"]
    assert request(server, "GET", "/launch?visitor_id=v1")[0] == 302
    status, paused = api.call("PATCH", f"/campaigns/{campaign['id']}", {"status": "paused"})
    assert status == 200 and paused["status"] == "paused"
    assert request(server, "GET", "/launch")[0] == 404
    status, clicks = api.call("GET", f"/clicks?campaign_id={campaign['id']}")
    assert status == 200 and clicks["items"][0]["external_id"] == "v1"


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "code"),
    [
        ("POST", "/campaigns", {"name": "x", "alias": "api"}, 422, "invalid"),
        ("POST", "/campaigns", {"name": "x", "alias": "ok", "colour": "red"}, 422, "invalid"),
        ("POST", "/offers", {"name": "x", "url": "ftp://x"}, 422, "invalid"),
        (
            "POST",
            "/offers",
            {"name": "x", "url": "https://x.test", "payout": "ten"},
            422,
            "invalid",
        ),
        ("POST", "/offers", {"name": "x", "url": "https://x.test", "payout": True}, 422, "invalid"),
        ("POST", "/offers", b"{not json", 400, "bad_json"),
        ("POST", "/offers", b"[1,2]", 400, "bad_json"),
        (
            "POST",
            "/offers",
            b'{"name": "x", "url": "https://x.test", "payout": NaN}',
            400,
            "bad_json",
        ),
        (
            "POST",
            "/offers",
            b"{" + b'"a":' * 1 + b'"' + b"x" * (1024 * 1024 + 1) + b'"}',
            413,
            "too_large",
        ),
        ("PATCH", "/offers/999", {"name": "y"}, 404, "not_found"),
        ("GET", "/clicks?limit=0", None, 422, "invalid"),
        ("GET", "/clicks?cursor=" + "z" * 100, None, 422, "invalid"),
        ("GET", "/conversions?since=yesterday", None, 422, "invalid"),
        ("GET", "/reports?group_by=planet", None, 422, "invalid"),
        ("GET", "/deliveries?state=lost", None, 422, "invalid"),
        ("GET", "/nothing-here", None, 404, "not_found"),
        ("DELETE", "/campaigns", None, 405, "method_not_allowed"),
        ("PATCH", "/settings", {"postback_key": "mine"}, 422, "invalid"),
        ("PATCH", "/settings", {"currency": "dollars"}, 422, "invalid"),
        ("PATCH", "/settings", {"timezone": "&TXlv@FH}"}, 422, "invalid"),
        ("PATCH", "/settings", {"timezone": "../../etc/passwd"}, 422, "invalid"),
        ("PATCH", "/settings", {"ignored_answer_status": 10**22}, 422, "invalid"),
        ("PATCH", "/settings", {"ignored_answer_status": 500}, 422, "invalid"),
        ("PATCH", "/settings", {"s2s_disable_after_hours": -1}, 422, "invalid"),
        ("PATCH", "/settings", {"status_trainings": {"": ["x"]}}, 422, "invalid"),
        ("PATCH", "/settings", {"status_trainings": {"sale": [1]}}, 422, "invalid"),
        ("PATCH", "/settings", {"aliases": ["clickid"]}, 422, "invalid"),
        ("PATCH", "/settings", {"allowed_networks": ["not-a-net"]}, 422, "invalid"),
        ("PATCH", "/settings", b'{"timezone": "\\udaf1"}', 422, "invalid"),
        ("GET", "/received-postbacks?cursor=%C2%B2", None, 422, "invalid"),
        ("GET", "/clicks?cursor=%C2%B2", None, 422, "invalid"),
        ("GET", "/conversions.csv?campaign_id=2147483648", None, 422, "invalid"),
        ("GET", "/conversions.csv?subid=%00", None, 422, "invalid"),
        ("GET", "/received-postbacks?reason=a%00b", None, 422, "invalid"),
        ("GET", "/deliveries?cursor=99999999999", None, 422, "invalid"),
    ],
)
def test_bad_requests_get_clear_errors(
    module_api: Api, method: str, path: str, payload: Any, status: int, code: str
) -> None:
    """Every kind of bad request gets a stable code and a human message, never a 500."""
    raw = payload if isinstance(payload, bytes) else None
    got_status, body = module_api.call(method, path, None if raw else payload, raw=raw)
    assert (got_status, body["code"]) == (status, code), body
    assert body["message"]


def test_duplicate_alias_is_409(api: Api) -> None:
    """A taken alias is a conflict."""
    assert api.call("POST", "/campaigns", {"name": "a", "alias": "same"})[0] == 201
    status, body = api.call("POST", "/campaigns", {"name": "b", "alias": "same"})
    assert status == 409 and body["code"] == "conflict"


def test_keyset_pagination_visits_every_click_once(api: Api, server: Server) -> None:
    """Walking pages with next_cursor returns each click exactly once, newest first."""
    api.call("POST", "/offers", {"name": "o", "url": "https://o.test/"})
    api.call("POST", "/campaigns", {"name": "c", "alias": "c", "offers": [{"offer_id": 1}]})
    wait_for_link(server, "c")
    for n in range(7):
        assert request(server, "GET", f"/c?n={n}")[0] == 302
    seen: list[str] = []
    cursor = ""
    while True:
        status, page = api.call("GET", f"/clicks?limit=3{'&cursor=' + cursor if cursor else ''}")
        assert status == 200
        seen += [item["subid"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert len(seen) == 7 and seen == sorted(seen, reverse=True)


def test_settings_and_key_rotation(api: Api) -> None:
    """Settings read and change; rotation gives a new postback URL."""
    status, settings = api.call(
        "PATCH", "/settings", {"currency": "eur", "timezone": "Europe/Berlin"}
    )
    assert status == 200 and settings["currency"] == "EUR"
    status, settings = api.call(
        "PATCH",
        "/settings",
        {
            "aliases": {"ClickID": "subid"},
            "status_trainings": {"sale": ["Approved", " paid "]},
            "allowed_networks": ["10.1.2.3/8"],
            "ignored_answer_status": 404,
            "s2s_disable_after_hours": 24,
        },
    )
    assert status == 200, settings
    assert settings["aliases"] == {"clickid": "subid"}
    assert settings["status_trainings"] == {"sale": ["approved", "paid"]}
    assert settings["allowed_networks"] == ["10.0.0.0/8"]
    assert (settings["ignored_answer_status"], settings["s2s_disable_after_hours"]) == (404, 24)
    status, rotated = api.call("POST", "/settings/postback-key/rotate")
    assert rotated["postback_key"] != settings["postback_key"]
    assert rotated["postback_url"].endswith(f"/{rotated['postback_key']}/postback")


def test_report_and_csv_exports(api: Api) -> None:
    """Reports come as JSON or CSV; the conversions export has its header row."""
    status, report = api.call("GET", "/reports?group_by=campaign&from=2026-01-01&to=2026-01-31")
    assert status == 200 and report["totals"]["clicks"] == 0
    status, text = api.call("GET", "/reports?group_by=day&from=2026-01-01&to=2026-01-02&format=csv")
    assert status == 200 and text.splitlines()[0].startswith("key,label,clicks")
    assert len(text.splitlines()) == 4
    status, text = api.call("GET", "/conversions.csv")
    assert status == 200 and text.splitlines() == [text.splitlines()[0]]


def test_resend_and_resend_failed(api: Api, engine: Engine) -> None:
    """A failed delivery is queued again by id or with every failed one; unknown ids are 404."""
    from clickloop.domain.deliveries import GiveUp
    from tests.integration.test_outbox import add_deliveries, claim, make_world, record

    world = make_world(engine, source_url=None)
    first, second = add_deliveries(world, ["https://a.example/1", "https://a.example/2"])
    record(engine, claim(engine), GiveUp(reason="HTTP 500"))
    assert api.call("GET", f"/deliveries/{first}")[1]["state"] == "failed"
    assert api.call("POST", f"/deliveries/{first}/resend") == (
        200,
        {"queued": 1, "delivery_ids": [first]},
    )
    assert api.call("GET", f"/deliveries/{first}")[1]["state"] == "queued"
    assert api.call("POST", "/deliveries/resend-failed") == (200, {"queued": 1})
    assert api.call("GET", f"/deliveries/{second}")[1]["state"] == "queued"
    status, body = api.call("POST", "/deliveries/999999/resend")
    assert status == 404 and body["code"] == "not_found"


def test_a_delivery_shows_its_fields_masked_with_its_attempts(api: Api, engine: Engine) -> None:
    """Listed and fetched deliveries show the same fields, the URL's secrets masked; the body and
    the dispatcher's lease stay inside; one delivery carries its attempts."""
    from clickloop.domain.deliveries import GiveUp
    from tests.integration.test_outbox import add_deliveries, claim, make_world, record

    world = make_world(engine, source_url=None)
    [delivery_id] = add_deliveries(world, ["https://a.example/pb?token=s3cret&cid=1"])
    record(engine, claim(engine), GiveUp(reason="HTTP 500"))
    status, listed = api.call("GET", "/deliveries?limit=1")
    assert status == 200 and listed["next_cursor"] is None
    [item] = listed["items"]
    status, fetched = api.call("GET", f"/deliveries/{delivery_id}")
    assert status == 200
    for shown in (item, fetched):
        assert shown["id"] == delivery_id and shown["state"] == "failed"
        assert "s3cret" not in shown["url"] and "cid=1" in shown["url"]
        assert not {"body", "claimed_by", "claimed_until", "dedup_key"} & set(shown)
    assert item["attempts"] == 1
    assert [attempt["delivery_id"] for attempt in fetched["attempts"]] == [delivery_id]
    assert api.call("GET", "/deliveries?limit=501")[0] == 422


def test_csv_export_neutralises_a_hostile_click_value(api: Api, server: Server) -> None:
    """A click's sub_id starting with TAB and = comes back in the report CSV as quoted text."""
    status, source = api.call(
        "POST",
        "/traffic-sources",
        {"name": "S", "parameters": [{"name": "sub_id_1", "param": "s1"}]},
    )
    assert status == 201, source
    status, offer = api.call("POST", "/offers", {"name": "O", "url": "https://shop.test/"})
    assert status == 201, offer
    status, campaign = api.call(
        "POST",
        "/campaigns",
        {
            "name": "C",
            "alias": "hostile",
            "traffic_source_id": source["id"],
            "offers": [{"offer_id": offer["id"], "weight": 100}],
        },
    )
    assert status == 201, campaign
    wait_for_link(server, "hostile")
    assert request(server, "GET", "/hostile?s1=%09%3DHYPERLINK(%22http://evil.test%22)")[0] == 302
    today = datetime.now(UTC).date().isoformat()
    status, text = api.call("GET", f"/reports?group_by=sub_id_1&from={today}&to={today}&format=csv")
    assert status == 200, text
    rows = list(csv.reader(io.StringIO(text, newline="")))
    labels = {row[1] for row in rows[1:]}
    assert '\'\t=HYPERLINK("http://evil.test")' in labels, rows
    assert not any(cell.startswith(("\t", "=")) for row in rows for cell in row), rows
