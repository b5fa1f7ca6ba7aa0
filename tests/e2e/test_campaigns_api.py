"""The campaign work screen over HTTP and the CLI, against a real server: the list with figures
(GET /campaigns/stats), clone, archive (the link answers 404) and restore, bulk status, links on
a tracking domain in the API, the CLI and the admin pages; bad input answers 422 naming it."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.services.tokens import create_token
from tests.conftest import Server
from tests.e2e.test_api import Api
from tests.e2e.test_clicks import request, wait_for_link
from tests.e2e.test_masking import admin_pages

NOW = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def server_env() -> dict[str, str]:
    return {"CLICKLOOP_EMBEDDED_WORKER": "false"}


def test_campaigns_over_api_cli_and_pages(server: Server, engine: Engine) -> None:
    """A lead shows as pending revenue in the list; clone copies offers and postbacks; archive
    makes the link 404 and hides the campaign; restore brings it back paused; tracking
    domains shape every link shown; bad parameters are 422 naming them."""
    api = Api(server, create_token(engine, name="campaigns", now=NOW))
    source = entities.create_traffic_source(
        engine,
        name="Push",
        now=NOW,
        parameters=[{"name": "external_id", "param": "clickid", "macro": "{click_id}"}],
    )
    offer = entities.create_offer(engine, name="Offer", url="https://offer.test/", now=NOW)
    status, created = api.call(
        "POST",
        "/campaigns",
        {
            "name": "Main",
            "alias": "main",
            "traffic_source_id": source,
            "offers": [{"offer_id": offer, "weight": 60}],
            "postbacks": [{"url": "https://crm.test/pb?s={status}", "statuses": ["lead"]}],
        },
    )
    assert status == 201 and created["link"] == f"{server.base_url}/main?clickid={{click_id}}"
    campaign = created["id"]
    wait_for_link(server, "main")

    # A click and its lead: pending revenue, not lost.
    status, headers, _ = request(server, "GET", "/main?clickid=x1")
    subid = re.search(r"subid=([^&;]+)", headers.get("set-cookie", ""))
    assert status == 302 and subid is not None
    key = entities.get_settings(engine)["postback_key"]
    assert (
        request(server, "GET", f"/{key}/postback?subid={subid.group(1)}&status=lead&payout=7")[0]
        == 200
    )
    status, board = api.call("GET", "/campaigns/stats?period=today&sort=projected_roi")
    assert status == 200 and board["period"] == "today"
    [row] = board["items"]
    assert row["figures"]["leads"] == 1 and row["figures"]["pending_revenue"] == "7.000000"
    assert row["figures"]["revenue"] == "0.000000" and row["link"] == created["link"]
    status, default = api.call("GET", "/campaigns/stats")
    assert status == 200 and default["period"] == "last_7_days"

    for query, field in (
        ("period=fortnight", "period"),
        ("sort=owner", "sort"),
        ("state=gone", "state"),
        ("period=custom&from=2026-01-02", "to"),
        ("colour=red", "colour"),
    ):
        status, error = api.call("GET", f"/campaigns/stats?{query}")
        assert (status, error["field"]) == (422, field), query

    status, copy = api.call("POST", f"/campaigns/{campaign}/clone", {"name": "Main B"})
    assert status == 201 and (copy["name"], copy["alias"]) == ("Main B", "main-copy")
    assert copy["offers"] == [{"offer_id": offer, "weight": 60}]
    assert [p["url"] for p in copy["postbacks"]] == ["https://crm.test/pb?s={status}"]
    status, _ = api.call("POST", f"/campaigns/{campaign}/clone", {"alias": "main-copy"})
    assert status == 409

    status, changed = api.call(
        "POST", "/campaigns/status", {"ids": [campaign, copy["id"]], "status": "paused"}
    )
    assert (status, changed) == (200, {"changed": 2})
    status, error = api.call(
        "POST", "/campaigns/status", {"ids": [campaign, 99999], "status": "active"}
    )
    assert status == 404
    status, error = api.call("POST", "/campaigns/status", {"ids": [campaign], "status": "gone"})
    assert status == 422 and error["field"] == "status"
    api.call("POST", "/campaigns/status", {"ids": [campaign], "status": "active"})
    wait_for_link(server, "main")

    status, archived = api.call("POST", f"/campaigns/{campaign}/archive")
    assert status == 200 and archived["archived_at"] and archived["status"] == "paused"
    wait_for_link(server, "main", 404)
    status, board = api.call("GET", "/campaigns/stats?period=today")
    assert [item["name"] for item in board["items"]] == ["Main B"]
    status, board = api.call("GET", "/campaigns/stats?period=today&state=archived")
    assert [item["figures"]["leads"] for item in board["items"]] == [1]
    status, error = api.call("PATCH", f"/campaigns/{campaign}", {"status": "active"})
    assert status == 422 and "restore it first" in error["message"]

    done = server.cli("campaigns", "restore", "main")
    assert done.returncode == 0 and "1 of 1 campaign(s) restored" in done.stdout
    done = server.cli("campaigns", "resume", "main", "main-copy")
    assert done.returncode == 0 and "2 of 2" in done.stdout
    wait_for_link(server, "main")

    # Tracking domains: set, chosen per campaign, used by the API, the CLI and the pages.
    status, error = api.call("PATCH", "/settings", {"tracking_domains": ["go.example.com"]})
    assert status == 422 and error["field"] == "tracking_domains"
    status, _ = api.call(
        "PATCH", "/settings", {"tracking_domains": ["https://go.example.com", "https://t.other.io"]}
    )
    assert status == 200
    status, error = api.call("PATCH", f"/campaigns/{campaign}", {"tracking_domain": "https://x.io"})
    assert status == 422 and error["field"] == "tracking_domain"
    status, moved = api.call(
        "PATCH", f"/campaigns/{campaign}", {"tracking_domain": "https://t.other.io"}
    )
    assert status == 200 and moved["link"] == "https://t.other.io/main?clickid={click_id}"
    done = server.cli("campaigns", "link", "main")
    assert done.stdout.strip() == "https://t.other.io/main?clickid={click_id}"
    status, listed = api.call("GET", "/campaigns")
    links = {item["alias"]: item["link"] for item in listed["items"]}
    assert links["main-copy"] == "https://go.example.com/main-copy?clickid={click_id}"
    done = server.cli("campaigns", "clone", "main", "--alias", "cli-copy")
    assert done.returncode == 0 and "link: https://t.other.io/cli-copy?" in done.stdout
    done = server.cli("campaigns", "archive", "cli-copy")
    assert done.returncode == 0 and "1 of 1 campaign(s) archived" in done.stdout
    assert "cli-copy" in server.cli("campaigns", "list", "--archived").stdout
    assert "cli-copy" not in server.cli("campaigns", "list").stdout

    listing, page = admin_pages(
        server, engine, ["/campaigns?period=today", f"/campaigns/{campaign}"]
    )
    assert 'data-copy-text="https://t.other.io/main?clickid={click_id}"' in listing
    assert "Main B" in listing and "cli-copy" not in listing
    assert "https://t.other.io/main?clickid={click_id}" in page and "crm.test" in page
