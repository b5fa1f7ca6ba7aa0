"""The read-only analyst on a real server: every route of the admin UI and of the API that could
change something, enumerated from the apps' own route tables, answers 403 and changes nothing;
the analyst's pages show no stored secret; its sessions end when an admin disables it."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from starlette.routing import Route

from clickloop.http.api import READS_BY_POST, create_api
from clickloop.http.web import SELF_SERVICE, create_web
from clickloop.services import entities, users
from clickloop.services.tokens import create_token
from clickloop.storage import tables as t
from tests.conftest import Server
from tests.integration.test_users import Browserless

pytestmark = pytest.mark.slow

NOW = datetime(2026, 11, 1, tzinfo=UTC)
PASSWORD = "correct horse battery"
S2S_TOKEN = "S2s-T0ken-9931"  # in the source's S2S URL as token=
HEADER_KEY = "Hdr-K3y-4412"  # in the campaign postback's X-Api-Key header


def routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route of a Starlette app, placeholders filled with 1."""
    found = []
    for route in app.routes:
        if isinstance(route, Route):
            path = re.sub(r"{(\w+)(:\w+)?}", "1", route.path)
            found += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
    return found


async def _nothing() -> None:
    return None


def _apps(engine: Engine) -> tuple[Any, Any]:
    kwargs: dict[str, Any] = {"base_url": "http://x", "data_dir": Path("unused")}
    return create_web(engine, on_change=_nothing, **kwargs), create_api(
        engine, on_change=_nothing, **kwargs
    )


def snapshot(engine: Engine) -> dict[str, Any]:
    """What a change would show in: every table's row count, the settings and the users."""
    skip = {"admin_sessions", "login_attempts"}  # logging in writes those
    with engine.connect() as conn:
        counts = {
            table.name: conn.execute(select(func.count()).select_from(table)).scalar()
            for table in t.metadata.sorted_tables
            if table.name not in skip
        }
        settings = dict(conn.execute(select(t.settings.c.key, t.settings.c.value)).all())
        people = conn.execute(select(t.users).order_by(t.users.c.id)).all()
        sources = conn.execute(select(t.traffic_sources).order_by(t.traffic_sources.c.id)).all()
    return {"counts": counts, "settings": settings, "users": people, "sources": sources}


@pytest.fixture
def world(engine: Engine, server: Server) -> dict[str, Any]:
    """An admin, an analyst, a token of each, and S2S targets holding secrets."""
    entities.update_settings(engine, {"allowed_networks": ["127.0.0.0/8"]})
    source_id = entities.create_traffic_source(
        engine,
        now=NOW,
        name="Pushy",
        postback_url=f"https://pushy.example/pb?click={{external_id}}&token={S2S_TOKEN}",
        postback_statuses=["sale"],
    )
    offer_network = entities.create_affiliate_network(engine, now=NOW, name="Net")
    offer_id = entities.create_offer(
        engine,
        now=NOW,
        name="Offer",
        url="https://offer.example/",
        affiliate_network_id=offer_network,
    )
    entities.create_campaign(
        engine,
        now=NOW,
        name="Camp",
        alias="camp",
        traffic_source_id=source_id,
        offers=[(offer_id, 100)],
        postbacks=[
            {
                "url": "https://tracker.example/s2s?c={subid}",
                "statuses": ["sale"],
                "headers": {"X-Api-Key": HEADER_KEY},
            }
        ],
    )
    users.create_user(engine, "boss", PASSWORD, now=NOW)
    users.create_user(engine, "ana", PASSWORD, now=NOW, role="analyst")
    return {
        "admin_token": create_token(engine, name="admin", now=NOW),
        "analyst_token": create_token(engine, name="ana", now=NOW, role="analyst"),
        "key": entities.get_settings(engine)["postback_key"],
    }


def logged_in(server: Server, username: str) -> Browserless:
    client = Browserless(server)
    assert client.login(username, PASSWORD)[0] == 303
    return client


def api(server: Server, token: str, method: str, path: str, body: bytes | None = None) -> Any:
    request = urllib.request.Request(
        f"{server.base_url}/api/v1{path}",
        data=body if body is not None else (b"{}" if method != "GET" else None),
        method=method,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_every_change_in_the_admin_ui_is_refused_to_an_analyst(
    server: Server, engine: Engine, world: dict[str, Any]
) -> None:
    """Each POST route of the admin UI (but logging out and one's own password) answers an
    analyst 403 with the read-only page, even with a valid CSRF token; nothing changes."""
    web_app, _ = _apps(engine)
    # Logging in is open to all; logging out and one's own password are the analyst's own.
    mine = SELF_SERVICE | {"/login"}
    changes = [(m, p) for m, p in routes(web_app) if m != "GET" and p not in mine]
    assert len(changes) >= 30 and ("POST", "/users") in changes and ("POST", "/rates") in changes
    analyst = logged_in(server, "ana")
    token = analyst.csrf("/admin/settings")
    before = snapshot(engine)
    for method, path in changes:
        status, _, page = analyst.request(
            method, f"/admin{path}", {"csrf": token, "name": "x", "role": "admin"}
        )
        assert status == 403, (method, path, status)
        assert "read-only (analyst)" in page, (method, path)
    assert snapshot(engine) == before
    # The page a refusal leaves the analyst on says who they are and leads on.
    assert "analyst, read-only" in page and 'href="/admin/"' in page


def test_every_change_in_the_api_is_refused_to_an_analyst_token(
    server: Server, engine: Engine, world: dict[str, Any]
) -> None:
    """Each API route whose method is not GET (but building a report, a read) answers an
    analyst's token 403 `read_only`; an admin's token is not refused there."""
    _, api_app = _apps(engine)
    every = routes(api_app)
    changes = [(m, p) for m, p in every if m != "GET" and (m, p) not in READS_BY_POST]
    assert len(changes) >= 15 and ("PATCH", "/settings") in changes
    before = snapshot(engine)
    for method, path in changes:
        status, body = api(server, world["analyst_token"], method, path)
        assert status == 403, (method, path, status, body)
        assert json.loads(body)["code"] == "read_only"
    assert snapshot(engine) == before
    for method, path in changes:
        assert api(server, world["admin_token"], method, path)[0] != 403, (method, path)
    for method, path in READS_BY_POST:
        body = json.dumps(
            {"range": {"from": "2026-11-01", "to": "2026-11-02"}, "grouping": ["day"]}
        )
        status, text = api(server, world["analyst_token"], method, path, body.encode())
        assert status == 200, text


def test_an_analyst_reads_but_sees_no_secret(
    server: Server, engine: Engine, world: dict[str, Any]
) -> None:
    """Every page of the admin UI and every GET of the API that an admin sees a secret on
    shows an analyst none: not the postback key, not an S2S token, not a header's key."""
    web_app, api_app = _apps(engine)
    secrets = (world["key"], S2S_TOKEN, HEADER_KEY)
    pages = [p for m, p in routes(web_app) if m == "GET" and "/saved/" not in p]
    admin, analyst = logged_in(server, "boss"), logged_in(server, "ana")
    seen_by_admin: set[str] = set()
    for path in pages:
        status, headers, page = analyst.request("GET", f"/admin{path}")
        assert status in (200, 303, 404), (path, status)
        assert not (headers["location"] or "").startswith("/admin/login"), path
        leaked = [s for s in secrets if s in page]
        assert not leaked, (path, leaked)
        seen_by_admin |= {s for s in secrets if s in admin.request("GET", f"/admin{path}")[2]}
    # The test would see a leak: the admin's pages do show each secret (to edit it).
    assert seen_by_admin == set(secrets)
    for method, path in routes(api_app):
        if method == "GET" and "{" not in path and not path.endswith(".csv"):
            status, body = api(server, world["analyst_token"], "GET", path)
            leaked = [s for s in secrets if s in body]
            assert not leaked, (path, leaked)
    status, body = api(server, world["admin_token"], "GET", "/settings")
    assert world["key"] in body


def test_disabling_an_analyst_ends_their_session_at_once(
    server: Server, engine: Engine, world: dict[str, Any]
) -> None:
    """An admin disables the analyst on the users page: the analyst's next request, on a
    cookie that worked a moment ago, goes to the login page, and logging in fails."""
    analyst, admin = logged_in(server, "ana"), logged_in(server, "boss")
    assert analyst.request("GET", "/admin/reports")[0] == 200
    ana = users.find_user(engine, "ana")
    status, headers, _ = admin.request(
        "POST", f"/admin/users/{ana.id}/disable", {"csrf": admin.csrf("/admin/users")}
    )
    assert status == 303 and headers["location"] == "/admin/users"
    assert analyst.request("GET", "/admin/reports")[0] == 303
    assert Browserless(server).login("ana", PASSWORD)[0] == 401
