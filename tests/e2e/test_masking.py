"""Secrets in S2S URLs stay hidden on every surface of a running server: API, CLI, admin UI and
the server's log, in each form (path segment, declared `t`, `%74oken=`, userinfo password)."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from clickloop.catalog.templates import load_catalog
from clickloop.services import entities, users
from clickloop.services.templates import create_traffic_source_from_template
from clickloop.services.tokens import create_token
from clickloop.storage import tables as t
from tests.conftest import Server, http_endpoint
from tests.e2e.test_api import Api
from tests.e2e.test_clicks import request, wait_for_link
from tests.e2e.test_loop import wait_for

pytestmark = pytest.mark.slow

NOW = datetime(2026, 11, 1, tzinfo=UTC)
POSTBACK_KEY = "PbKey-S3cret-7781"  # a Keitaro upstream's key: a path segment
BODYCLICK_KEY, BODYCLICK_TOKEN = "K3Y-1111", "T0KEN-2222"  # bodyclick's k= and t=
ENCODED_TOKEN = "EncTok-5551"  # sent as %74oken=
PASSWORD = "Pa55-W0rd"  # in the URL's userinfo
SECRETS = (POSTBACK_KEY, BODYCLICK_KEY, BODYCLICK_TOKEN, ENCODED_TOKEN, PASSWORD)


@pytest.fixture
def request_fixture(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    return request


@pytest.fixture
def server_env() -> dict[str, str]:
    return {"CLICKLOOP_LOG_LEVEL": "info"}


@pytest.fixture
def target() -> Iterator[tuple[list[str], int]]:
    """An S2S endpoint that refuses every request, echoing what it got (secrets included)."""
    received: list[str] = []

    def answer(request: BaseHTTPRequestHandler) -> tuple[int, bytes]:
        received.append(request.path)
        auth = request.headers.get("Authorization")
        return 500, f"rejected: {request.path} auth={auth}".encode()

    with http_endpoint(answer) as base:
        yield received, int(base.rsplit(":", 1)[1])


def assert_hidden(text: str, where: str) -> None:
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"{where} shows {leaked}: {text[:3000]}"


def admin_pages(server: Server, engine: Engine, paths: list[str]) -> list[str]:
    """The admin pages at `paths`, fetched after logging in like a browser."""
    users.create_user(engine, "admin", "correct horse battery", now=NOW)
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    with opener.open(f"{server.base_url}/admin/login", timeout=10) as answer:
        found = re.search(r'name="csrf" value="([^"]+)"', answer.read().decode())
    assert found is not None
    form = {"csrf": found.group(1), "username": "admin", "password": "correct horse battery"}
    opener.open(f"{server.base_url}/admin/login", urllib.parse.urlencode(form).encode(), 10)
    pages = []
    for path in paths:
        with opener.open(f"{server.base_url}/admin{path}", timeout=10) as answer:
            assert answer.url.endswith(path), answer.url  # not sent back to the login page
            pages.append(answer.read().decode())
    return pages


def cli(server: Server, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "clickloop.cli", *args],
        env={**os.environ, **server.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout


def test_secrets_are_masked_on_every_surface(
    request_fixture: pytest.FixtureRequest, engine: Engine, target: tuple[list[str], int]
) -> None:
    """Deliveries to endpoints with secrets in four forms show none of them anywhere."""
    received, port = target
    entities.update_settings(engine, {"allowed_networks": ["127.0.0.0/8"]})
    server: Server = request_fixture.getfixturevalue("server")
    catalog = load_catalog()
    # The campaign's source, made from the Keitaro template: its key is a path segment.
    source = create_traffic_source_from_template(
        engine,
        catalog,
        template_key="keitaro",
        field_values={"domain": f"127.0.0.1:{port}", "postback_key": POSTBACK_KEY},
        now=NOW,
    )
    # Another source whose template declares `k` and `t` secret.
    create_traffic_source_from_template(
        engine,
        catalog,
        template_key="bodyclick_ru",
        field_values={"key": BODYCLICK_KEY, "token": BODYCLICK_TOKEN},
        now=NOW,
    )
    offer = entities.create_offer(engine, name="Offer", url="https://offer.test/lp", now=NOW)
    base = f"http://127.0.0.1:{port}"
    statuses = ["sale"]
    campaign = entities.create_campaign(
        engine,
        name="Masked",
        alias="masked",
        now=NOW,
        offers=[(offer, 1)],
        traffic_source_id=source,
        postbacks=[
            {"url": f"{base}/t?t={BODYCLICK_TOKEN}&cid={{subid}}", "statuses": statuses},
            {"url": f"{base}/enc?%74oken={ENCODED_TOKEN}&cid={{subid}}", "statuses": statuses},
            {
                "url": f"http://crm:{PASSWORD}@127.0.0.1:{port}/u?cid={{subid}}",
                "statuses": statuses,
            },
        ],
    )
    wait_for_link(server, "masked")
    assert request(server, "GET", "/masked?external_id=ext-1")[0] == 302
    click = entities.list_rows(engine, "clicks")[0]["subid"]
    key = entities.get_settings(engine)["postback_key"]
    assert request(server, "GET", f"/{key}/postback?subid={click}&status=sale&payout=2")[0] == 200

    def attempted() -> bool:
        with engine.connect() as conn:
            query = select(func.count(func.distinct(t.delivery_attempts.c.delivery_id)))
            return conn.execute(query).scalar() == 4

    wait_for(attempted, "an attempt of each of the four deliveries")
    wait_for(lambda: "attempt 1 failed" in server.log_path.read_text(), "the log line")
    # The secrets did go out: masking hides them from people, not from the target.
    assert any(POSTBACK_KEY in path for path in received)

    api = Api(server, create_token(engine, name="mask", now=NOW))
    status, listed = api.call("GET", "/deliveries")
    assert status == 200 and len(listed["items"]) == 4
    assert_hidden(json.dumps(listed), "API deliveries")
    assert "/***/postback?" in json.dumps(listed)
    for item in listed["items"]:
        status, one = api.call("GET", f"/deliveries/{item['id']}")
        assert status == 200 and one["attempts"] and "***" in one["url"]
        assert_hidden(json.dumps(one), f"API delivery {item['id']}")
    for path in ("/traffic-sources", f"/traffic-sources/{source}", f"/campaigns/{campaign}"):
        status, body = api.call("GET", path)
        assert status == 200
        assert_hidden(json.dumps(body), f"API {path}")

    assert_hidden(cli(server, "deliveries", "list", "--attempts"), "CLI deliveries list")
    assert_hidden(cli(server, "traffic-sources", "list"), "CLI traffic-sources list")

    delivery_ids = [item["id"] for item in listed["items"]]
    pages = admin_pages(
        server,
        engine,
        ["/deliveries", "/traffic-sources", "/"] + [f"/deliveries/{i}" for i in delivery_ids],
    )
    for page in pages:
        assert_hidden(page, "admin UI")
    assert "***" in pages[0] and "***" in pages[1]
    assert "failing since" in pages[2] and "/t?t=***" in pages[2]  # the dashboard's alerts

    log = server.log_path.read_text()
    assert "attempt 1 failed" in log
    assert_hidden(log, "server log")
