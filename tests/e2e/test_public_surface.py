"""What a visitor who is not logged in can reach: no answer carries a secret (the postback key,
an API token, the session signing key, an S2S URL), and the demo offer exists only with the demo.
"""

from __future__ import annotations

import http.client
import re
import time
from datetime import UTC, datetime
from decimal import Decimal
from html import unescape
from urllib.parse import urlencode, urljoin, urlsplit

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from clickloop.services import entities, tokens, users
from clickloop.services.demo import ensure_demo_campaign
from clickloop.storage import tables as t
from tests.conftest import Server
from tests.e2e.test_clicks import wait_for_link

pytestmark = pytest.mark.slow

NOW = datetime(2026, 11, 1, tzinfo=UTC)
S2S_SECRET = "s2s-secret-0f3c9a"
Answer = tuple[int, list[tuple[str, str]], bytes]


def fetch(server: Server, method: str, target: str, form: dict[str, str] | None = None) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        headers = {"content-type": "application/x-www-form-urlencoded"} if form is not None else {}
        body = urlencode(form) if form is not None else None
        connection.request(method, target, body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.getheaders(), answer.read()
    finally:
        connection.close()


def public(target: str) -> bool:
    """A path a logged-out visitor may be sent to on this server (not the admin's pages)."""
    path = urlsplit(target).path
    if path.startswith("/admin"):
        return path in ("/admin/login", "/admin/") or path.startswith("/admin/static/")
    return not path.startswith("/api/v1/") or path == "/api/v1/openapi.json"


def crawl(server: Server, seeds: list[tuple[str, str]]) -> dict[tuple[str, str], Answer]:
    """Every answer reachable from the seeds by links, redirects and forms on this server."""
    seen: dict[tuple[str, str], Answer] = {}
    queue = list(seeds)
    while queue and len(seen) < 200:
        method, target = queue.pop(0)
        if (method, target) in seen:
            continue
        form = None
        if method == "POST" and "#" in target:
            target, _, encoded = target.partition("#")
            form = dict(pair.split("=", 1) for pair in encoded.split("&") if pair)
        _, headers, body = seen[(method, target)] = fetch(server, method, target, form)
        found: list[tuple[str, str]] = []
        for name, value in headers:
            if name.lower() == "location":
                found.append(("GET", value))
        text = body.decode("utf-8", "replace")
        for link in re.findall(r'(?:href|src)="([^"]+)"', text):
            found.append(("GET", unescape(link)))
        forms = re.findall(r'<form[^>]*action="([^"]*)"[^>]*>(.*?)</form>', text, re.S)
        for action, inner in forms:
            fields = re.findall(r'name="([^"]+)" value="([^"]*)"', inner)
            encoded = "&".join(f"{k}={unescape(v)}" for k, v in fields)
            found.append(("POST", f"{unescape(action) or target}#{encoded}"))
        for next_method, link in found:
            absolute = urljoin(server.base_url + target, link)
            if not absolute.startswith(server.base_url + "/"):
                continue
            relative = absolute.removeprefix(server.base_url)
            if public(relative):
                queue.append((next_method, relative))
    return seen


@pytest.mark.parametrize("demo", [True, False], ids=["demo", "no-demo"])
def test_no_unauthenticated_answer_reveals_a_secret(
    server: Server, engine: Engine, demo: bool
) -> None:
    """Crawl everything a logged-out visitor reaches: no body or header holds any secret."""
    users.create_user(engine, "alice", "correct horse", now=NOW)
    token = tokens.create_token(engine, name="leak check", now=NOW)
    with engine.begin() as conn:
        entities.add_traffic_source(
            conn,
            name="Secret source",
            now=NOW,
            postback_url=f"http://127.0.0.1:9/s2s?token={S2S_SECRET}&cid={{external_id}}",
        )
    link = ensure_demo_campaign(engine, base_url=server.base_url, now=NOW) if demo else None
    if link:
        wait_for_link(server, "demo")
    else:
        time.sleep(1.5)  # the server's config poll: the new source is in what it serves
    key = entities.get_settings(engine)["postback_key"]
    seeds = [
        ("GET", "/"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("POST", "/healthz"),
        ("GET", "/no-such-campaign"),
        ("GET", "/a/b/c"),
        ("GET", "/_demo/offer"),
        ("GET", "/_demo/offer?subid=0123456789abcdef"),
        ("POST", "/_demo/offer#subid=0123456789abcdef"),
        ("GET", "/_demo/other"),
        ("GET", "/admin/login"),
        ("GET", "/admin/settings"),
        ("GET", "/admin/no-such-page"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/settings"),
        ("GET", "/wrong-key/postback?subid=x&status=sale"),
        ("GET", f"/{key}/postback?subid=x&status=sale"),
        ("GET", f"/{key}/postback?subid=x&status=sale&return=ok"),
    ]
    if link:
        seeds.append(("GET", link.removeprefix(server.base_url)))
    answers = crawl(server, seeds)
    session_key = (server.data_dir / "web-session.key").read_text().strip()
    secrets = {
        "postback key": key,
        "API token": token,
        "API token body": token.removeprefix(tokens.TOKEN_PREFIX),
        "session key": session_key,
        "S2S URL secret": S2S_SECRET,
    }
    for (method, target), (_, headers, body) in answers.items():
        text = body.decode("utf-8", "replace") + "\n".join(f"{k}: {v}" for k, v in headers)
        for name, secret in secrets.items():
            assert secret not in text, f"{method} {target} reveals the {name}"
    offer_pages = [target for _, target in answers if target.startswith("/_demo/offer?")]
    if demo:
        assert any("subid=" in page for page in offer_pages), sorted(answers)
    else:
        assert all(answers[("GET", target)][0] == 404 for target in offer_pages)
        assert answers[("POST", "/_demo/offer")][0] == 404


def test_demo_offer_page_reports_the_sale_of_a_demo_click(server: Server, engine: Engine) -> None:
    """The demo loop without the key: click, offer page, its button records the sale."""
    link = ensure_demo_campaign(engine, base_url=server.base_url, now=NOW)
    wait_for_link(server, "demo")
    status, headers, _ = fetch(server, "GET", link.removeprefix(server.base_url))
    assert status == 302
    offer = dict((k.lower(), v) for k, v in headers)["location"].removeprefix(server.base_url)
    subid = re.search(r"subid=([0-9A-Za-z_-]+)", offer)
    assert subid is not None, offer
    status, _, page = fetch(server, "GET", offer)
    assert status == 200 and b'action="/_demo/offer"' in page
    status, _, page = fetch(server, "POST", "/_demo/offer", {"subid": subid.group(1)})
    assert status == 200 and b"accepted" in page, page
    with engine.connect() as conn:
        row = conn.execute(select(t.conversions).where(t.conversions.c.subid == subid.group(1)))
        conversion = row.one()
    assert conversion.type == "sale" and conversion.payout == Decimal("12.5")


def test_demo_offer_converts_only_demo_clicks(server: Server, engine: Engine) -> None:
    """A subid of another campaign's click, or an unknown one, gets no conversion from it."""
    ensure_demo_campaign(engine, base_url=server.base_url, now=NOW)
    wait_for_link(server, "demo")
    with engine.begin() as conn:
        url = "http://example.com/?s={subid}"
        offer = entities.add_offer(conn, name="Real offer", url=url, now=NOW)
        entities.add_campaign(conn, name="Real", alias="real", now=NOW, offers=[(offer, 100)])
    wait_for_link(server, "real")
    _, headers, _ = fetch(server, "GET", "/real")
    subid = re.search(r"\?s=([0-9A-Za-z_-]+)", dict((k.lower(), v) for k, v in headers)["location"])
    assert subid is not None, headers
    for given in (subid.group(1), "0123456789abcdef"):
        status, _, _ = fetch(server, "POST", "/_demo/offer", {"subid": given})
        assert status == 404
    with engine.connect() as conn:
        assert conn.execute(select(t.conversions)).first() is None
