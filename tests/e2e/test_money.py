"""Money as users see it on a real server: one cost per click in every view, and a tracker
currency that never relabels stored amounts, through the API and the settings form."""

from __future__ import annotations

import csv
import html
import io
import re
import urllib.parse
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.services.tokens import create_token
from tests.conftest import Server
from tests.e2e.test_api import Api
from tests.e2e.test_clicks import request, wait_for_link
from tests.integration.test_users import Browserless, server_cli

NOW = datetime(2026, 11, 1, tzinfo=UTC)
pytestmark = pytest.mark.slow


def _setup_campaign(engine: Engine, server: Server) -> None:
    """A CPC campaign (0.25 a click) whose offer passes the subid to the network as `sub1`."""
    network = entities.create_affiliate_network(
        engine, name="Net", now=NOW, offer_params="&sub1={subid}"
    )
    offer = entities.create_offer(
        engine, name="Offer", url="https://offer.test/lp", now=NOW, affiliate_network_id=network
    )
    entities.create_campaign(
        engine,
        name="Paid",
        alias="paid",
        now=NOW,
        offers=[(offer, 1)],
        cost_model="cpc",
        cost_value="0.25",
    )
    wait_for_link(server, "paid")


def _click(server: Server) -> str:
    status, headers, _ = request(server, "GET", "/paid")
    assert status == 302
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(headers["location"]).query))["sub1"]


def _postback(server: Server, engine: Engine, query: str) -> None:
    key = entities.get_settings(engine)["postback_key"]
    assert request(server, "GET", f"/{key}/postback?{query}")[2] == b"OK"


def _logged_in(server: Server) -> Browserless:
    done = server_cli(server, "user", "create", "alice", "--password-stdin", stdin="correct horse")
    assert done.returncode == 0, done.stderr
    client = Browserless(server)
    assert client.login("alice", "correct horse")[0] == 303
    return client


def _cells(page: str) -> list[str]:
    return [html.unescape(cell).strip() for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", page)]


def test_report_dashboard_campaigns_and_csv_count_cost_once(server: Server, engine: Engine) -> None:
    """A postback's cost replaces the click's CPC: every view shows cost 2.25 and profit 7.75."""
    _setup_campaign(engine, server)
    paid, unpaid = _click(server), _click(server)
    assert paid != unpaid
    _postback(server, engine, f"subid={paid}&status=sale&payout=10&cost=2")
    api = Api(server, create_token(engine, name="tests", now=NOW))
    today = datetime.now(UTC).date()
    span = f"from={today - timedelta(days=1)}&to={today + timedelta(days=1)}"
    status, report = api.call("GET", f"/reports?group_by=campaign&{span}")
    assert status == 200, report
    totals = report["totals"]
    assert (Decimal(totals["cost"]), Decimal(totals["profit"])) == (
        Decimal("2.25"),
        Decimal("7.75"),
    )
    assert Decimal(totals["revenue"]) == Decimal(10)
    status, text = api.call("GET", f"/reports?group_by=day&{span}&format=csv")
    assert status == 200
    total_row = list(csv.DictReader(io.StringIO(text)))[-1]
    assert total_row["key"] == "total"
    assert (Decimal(total_row["cost"]), Decimal(total_row["profit"])) == (
        Decimal("2.25"),
        Decimal("7.75"),
    )
    client = _logged_in(server)
    status, _, page = client.request("GET", "/admin/campaigns")
    assert status == 200
    # Confirmed revenue, cost and profit (its columns move; the figures are unique here).
    assert {"$10.00", "$2.25", "$7.75"} <= set(_cells(page))
    status, _, page = client.request("GET", "/admin/")
    assert status == 200
    profit = re.search(r"Profit today</span><strong[^>]*>([^<]*)</strong>", page)
    assert profit is not None and profit.group(1) == "7.75"


def test_currency_change_is_refused_once_money_is_stored(server: Server, engine: Engine) -> None:
    """Before any money the currency changes; after a conversion both API and form refuse it."""
    api = Api(server, create_token(engine, name="tests", now=NOW))
    status, settings = api.call("PATCH", "/settings", {"currency": "eur"})
    assert status == 200 and settings["currency"] == "EUR"
    status, settings = api.call("PATCH", "/settings", {"currency": "usd"})
    assert status == 200 and settings["currency"] == "USD"
    _setup_campaign(engine, server)
    _postback(server, engine, f"subid={_click(server)}&status=sale&payout=10")
    status, answer = api.call("PATCH", "/settings", {"currency": "EUR"})
    assert status == 422, answer
    assert "USD" in str(answer) and "stored" in str(answer)
    # Saving the form with the same currency still works: only a change is refused.
    status, settings = api.call("PATCH", "/settings", {"currency": "usd", "timezone": "UTC"})
    assert status == 200 and settings["currency"] == "USD"
    client = _logged_in(server)
    form = {
        "csrf": client.csrf("/admin/settings"),
        "currency": "EUR",
        "timezone": "Europe/Berlin",
        "ignored_answer_status": "200",
    }
    status, _, page = client.request("POST", "/admin/settings", form)
    assert status == 422
    assert "stored" in html.unescape(page) and "USD" in page
    assert entities.get_settings(engine)["currency"] == "USD"
    assert entities.get_settings(engine)["timezone"] == "UTC"  # nothing of the form was saved
    status, report = api.call("GET", "/reports?group_by=campaign")
    assert report["currency"] == "USD" and Decimal(report["totals"]["revenue"]) == Decimal(10)
