"""POST /api/v1/conversions/{id}/status and the admin work screens (clicks, click, conversion,
upload, deliveries filters) against a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from clickloop.services import entities, users
from clickloop.services.tokens import create_token
from clickloop.storage import tables as t
from tests.conftest import Server
from tests.e2e.test_admin_answers import PASSWORD, Admin
from tests.e2e.test_api import Api
from tests.postback_world import World, add_clicks, make_world

NOW = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def server_env() -> dict[str, str]:
    # The tests read queued deliveries; an embedded dispatcher would send them away first.
    return {"CLICKLOOP_EMBEDDED_WORKER": "false"}


@pytest.fixture
def world(engine: Engine) -> World:
    """The postback world with a sale CRM hook on its campaign and the click `pl1`."""
    world = make_world(engine)
    with engine.begin() as conn:
        conn.execute(
            t.campaign_postbacks.insert().values(
                campaign_id=world.campaign_id,
                url="https://crm.example/hook?s={status}",
                method="GET",
                statuses=["sale"],
                enabled=True,
                created_at=NOW,
            )
        )
    add_clicks(engine, world, ["pl1", "pl2"], offer_id=world.plain_offer_id)
    return world


@pytest.fixture
def api(server: Server, engine: Engine) -> Api:
    return Api(server, create_token(engine, name="tests", now=NOW))


@pytest.fixture
def admin(server: Server, engine: Engine) -> Admin:
    users.create_user(engine, "admin", PASSWORD, now=NOW)
    return Admin(server)


def _lead(server: Server, engine: Engine, subid: str = "pl1") -> int:
    key = entities.get_settings(engine)["postback_key"]
    status, _ = _get(server, f"/{key}/postback?subid={subid}&status=lead&payout=4")
    assert status == 200
    with engine.connect() as conn:
        found = conn.execute(select(t.conversions.c.id).where(t.conversions.c.subid == subid))
        return int(found.scalar_one())


def _get(server: Server, path: str) -> tuple[int, str]:
    from tests.e2e.test_clicks import request

    status, _, body = request(server, "GET", path)
    return status, body.decode() if isinstance(body, bytes) else str(body)


def _queued(engine: Engine, conversion_id: int) -> list[str]:
    with engine.connect() as conn:
        d = t.deliveries.c
        return list(conn.execute(select(d.url).where(d.conversion_id == conversion_id)).scalars())


def test_api_changes_a_status_by_the_postback_rules(
    api: Api, server: Server, engine: Engine, world: World
) -> None:
    """Lead -> sale answers 200 with the conversion and queues the sale's S2S; sale -> lead is
    a 409 saying it is stale; both are in the received-postback log as MANUAL by the token."""
    conversion_id = _lead(server, engine)
    status, body = api.call("POST", f"/conversions/{conversion_id}/status", {"status": "sale"})
    assert status == 200, body
    assert (body["outcome"], body["conversion"]["type"]) == ("updated", "sale")
    assert _queued(engine, conversion_id) == ["https://crm.example/hook?s=sale"]
    status, body = api.call("POST", f"/conversions/{conversion_id}/status", {"status": "lead"})
    assert (status, body["code"]) == (409, "conflict") and "stale" in body["message"]
    status, log = api.call("GET", "/received-postbacks?subid=pl1")
    manual = [row for row in log["items"] if row["method"] == "MANUAL"]
    assert [row["outcome"] for row in manual] == ["ignored", "updated"]
    assert all("from=api-token%3A" in row["query"] for row in manual)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "status"),
        ({"status": "won"}, "status"),
        ({"status": 3}, "status"),
        ({"status": None}, "status"),
        ({"status": "sale", "payout": "3"}, "payout"),
    ],
)
def test_api_status_change_names_the_bad_field(
    api: Api, server: Server, engine: Engine, world: World, body: object, field: str
) -> None:
    """A missing, unknown or wrong-typed status, or another field, is a 422 naming it."""
    conversion_id = _lead(server, engine)
    status, answer = api.call("POST", f"/conversions/{conversion_id}/status", body)
    assert (status, answer["code"], answer.get("field")) == (422, "invalid", field), answer


def test_api_status_change_of_unknown_ids_is_404(api: Api, world: World) -> None:
    """An unknown id, id 0 and an id past 32 bits are 404, and a non-number route is 404 too;
    a body that is not JSON is 400; never a 500."""
    for path in (
        "/conversions/999/status",
        "/conversions/0/status",
        "/conversions/9999999999/status",
    ):
        status, body = api.call("POST", path, {"status": "sale"})
        assert (status, body["code"]) == (404, "not_found"), (path, body)
    status, body = api.call("POST", "/conversions/abc/status", {"status": "sale"})
    assert status == 404
    status, body = api.call("POST", "/conversions/1/status", raw=b"{not json")
    assert status in (400, 404), body
    status, body = api.call("GET", "/conversions/1/status")
    assert status == 405


def test_admin_walks_click_conversion_status_and_upload(
    admin: Admin, server: Server, engine: Engine, world: World
) -> None:
    """Conversion -> its click -> back; a manual sale with the CSRF token queues S2S (without it,
    403 and nothing changes); an upload previews then imports line by line."""
    conversion_id = _lead(server, engine)
    status, _, page = admin.call("GET", "/conversions")
    assert status == 200 and 'href="/admin/clicks/pl1"' in page
    assert f'href="/admin/conversions/{conversion_id}"' in page
    status, _, page = admin.call("GET", f"/conversions/{conversion_id}")
    assert status == 200 and 'href="/admin/clicks/pl1"' in page and "status=lead" in page
    status, _, click = admin.call("GET", "/clicks/pl1")
    assert status == 200 and f'href="/admin/conversions/{conversion_id}"' in click
    assert "sub_id_1" in click and "zone1" in click and "keyword" in click
    assert admin.call("GET", "/clicks/nope")[0] == 404
    token = Admin.csrf(page)
    path = f"/conversions/{conversion_id}/status"
    assert admin.call("POST", path, {"status": "sale", "csrf": "forged"})[0] == 403
    assert _queued(engine, conversion_id) == []
    status, headers, _ = admin.call("POST", path, {"status": "sale", "csrf": token})
    assert status == 303 and headers["location"].endswith(path.removesuffix("/status"))
    assert _queued(engine, conversion_id) == ["https://crm.example/hook?s=sale"]
    status, _, page = admin.call("GET", path.removesuffix("/status"))
    assert "MANUAL" in page and "from=admin%3Aadmin" in page and "Status set to sale" in page
    assert admin.call("POST", path, {"status": "bogus", "csrf": token})[0] == 422

    text = "subid,payout,tid,status\npl2,7.5,,sale\nnope,1,,sale\n"
    status, _, preview = admin.call(
        "POST", "/conversions/upload", {"csrf": token, "step": "preview", "text": text}
    )
    assert status == 200 and "2 lines to import" in preview
    assert _queued(engine, conversion_id + 1) == []
    status, _, result = admin.call(
        "POST", "/conversions/upload", {"csrf": token, "step": "import", "text": text}
    )
    rows = re.findall(r'<td class="n">(\d+)</td>.*?b-(\w+)', result)
    assert status == 200 and rows == [("2", "accepted"), ("3", "ignored")]
    assert "subid not found: nope" in html.unescape(result)
    status, _, _ = admin.call(
        "POST", "/conversions/upload", {"csrf": token, "step": "preview", "text": "  "}
    )
    assert status == 422


def test_admin_lists_filter_and_resend_selected(
    admin: Admin, server: Server, engine: Engine, world: World
) -> None:
    """The clicks log and the deliveries page filter as asked, refuse bad filters naming them,
    and the ticked deliveries are sent again."""
    conversion_id = _lead(server, engine)
    status, _, page = admin.call("GET", "/clicks?subid=pl1")
    assert status == 200 and page.count('href="/admin/clicks/pl') == 1
    status, _, page = admin.call("GET", f"/clicks?campaign_id={world.campaign_id}&country=DE")
    assert status == 200 and "No clicks match these filters" in page
    for bad in ("country=D1", "from=2026-13-01", "to=x", "traffic_source_id=abc"):
        status, _, page = admin.call("GET", f"/clicks?{bad}")
        name = bad.split("=")[0]
        assert status == 422 and f"“{name}”" in html.unescape(page), bad
    key = entities.get_settings(engine)["postback_key"]
    assert _get(server, f"/{key}/postback?subid=pl1&status=sale")[0] == 200
    with engine.connect() as conn:
        delivery_id, target = conn.execute(
            select(t.deliveries.c.id, t.deliveries.c.target_id)
        ).one()
        conn.execute(t.deliveries.update().values(state="failed", attempts=3))
        conn.commit()
    status, _, page = admin.call("GET", f"/deliveries?target=campaign_postback:{target}")
    assert status == 200 and f'value="{delivery_id}"' in page and ">failed<" in page
    status, _, page = admin.call("GET", "/deliveries?from=2000-01-01&to=2000-01-02")
    assert status == 200 and "No S2S postbacks match" in page
    assert admin.call("GET", "/deliveries?target=campaign_postback:999")[0] == 422
    token = Admin.csrf(page)
    form = {"csrf": token, "id": str(delivery_id), "back": "/deliveries?state=failed"}
    status, headers, _ = admin.call("POST", "/deliveries/resend", form)
    assert status == 303 and headers["location"].endswith("/deliveries?state=failed")
    with engine.connect() as conn:
        state = conn.execute(select(t.deliveries.c.state, t.deliveries.c.attempts)).one()
    assert state == ("queued", 0)
    status, _, page = admin.call("GET", f"/conversions/{conversion_id}")
    assert ">new<" in page and "1 of 1 deliveries queued again" in page
    _, _, dashboard = admin.call("GET", "/")
    assert (
        'new</span> <b>1</b> · <span class="badge b-queued">retrying</span> <b>0</b>' in dashboard
    )
    with engine.begin() as conn:
        conn.execute(t.deliveries.update().values(attempts=2))
    _, _, dashboard = admin.call("GET", "/")
    assert (
        'new</span> <b>0</b> · <span class="badge b-queued">retrying</span> <b>1</b>' in dashboard
    )
    _, _, page = admin.call("GET", "/deliveries")
    assert ">retrying<" in page


def test_dashboard_says_failing_since_in_the_settings_zone(
    admin: Admin, engine: Engine, world: World
) -> None:
    """A failing target's "failing since" is shown in the report time zone, not in UTC."""
    entities.update_settings(engine, {"timezone": "Europe/Berlin"})
    source = entities.create_traffic_source(engine, name="Failing", now=NOW)
    with engine.begin() as conn:
        conn.execute(
            t.traffic_sources.update()
            .where(t.traffic_sources.c.id == source)
            .values(failing_since=datetime(2026, 11, 1, 12, 0, tzinfo=UTC))
        )
    status, _, page = admin.call("GET", "/")
    assert status == 200
    assert "failing since 2026-11-01 13:00:00 (Europe/Berlin)" in page, page
