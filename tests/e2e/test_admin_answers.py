"""The admin UI's answers to hostile filters, its bulk re-process under the page's filters, and
405 answers with `Allow` on every route of the UI and the hot paths, against a real server."""

from __future__ import annotations

import html
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from datetime import UTC, datetime
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from starlette.routing import Route

from clickloop.http.web import create_web
from clickloop.services import users
from clickloop.storage import tables as t
from tests.conftest import Server
from tests.e2e.test_clicks import request

NOW = datetime(2026, 11, 1, tzinfo=UTC)
PASSWORD = "answers-test-pass"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _lower(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


class Admin:
    """A logged-in admin session over HTTP (cookies kept, redirects not followed)."""

    def __init__(self, server: Server) -> None:
        self.base = f"{server.base_url}/admin"
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(CookieJar()), _NoRedirect()
        )
        status, _, page = self.call("GET", "/login")
        assert status == 200
        form = {"csrf": self.csrf(page), "username": "admin", "password": PASSWORD}
        assert self.call("POST", "/login", form)[0] == 303

    @staticmethod
    def csrf(page: str) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found, page
        return found.group(1)

    def call(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        data = None if form is None else urllib.parse.urlencode(form).encode()
        req = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        try:
            with self.opener.open(req, timeout=10) as answer:
                return answer.status, _lower(answer.headers.items()), answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, _lower(error.headers.items()), error.read().decode()


@pytest.fixture
def admin(server: Server, engine: Engine) -> Admin:
    users.create_user(engine, "admin", PASSWORD, now=NOW)
    return Admin(server)


HOSTILE = {
    "nul": "%00",
    "nul_inside": "a%00b",
    "overlong": "x" * 5000,
    "date": "2026-13-45",
    "number": "12abc",
    "huge": "99999999999",
}
# Every filter of every list page, and the hostile values that each must refuse.
PAGE_FILTERS = {
    "/conversions": {
        "campaign_id": ["nul", "number", "huge"],
        "type": ["nul", "nul_inside", "overlong"],
        "subid": ["nul", "nul_inside", "overlong"],
        "from": ["nul", "date"],
        "to": ["nul", "date"],
        "cursor": ["nul", "number", "overlong"],
    },
    "/received-postbacks": {
        "outcome": ["nul", "overlong"],
        "reason": ["nul", "nul_inside", "overlong"],
        "subid": ["nul", "nul_inside", "overlong"],
        "cursor": ["nul", "number", "overlong"],
    },
    "/deliveries": {
        "state": ["nul", "overlong"],
        "target_kind": ["nul", "overlong"],
        "target": ["nul", "overlong"],
        "from": ["nul", "date"],
        "to": ["nul", "date"],
        "conversion_id": ["nul", "number", "huge"],
        "cursor": ["nul", "number", "overlong"],
    },
    "/reports": {
        "group_by": ["nul", "overlong"],
        "from": ["nul", "date"],
        "to": ["nul", "date"],
        "timezone": ["nul", "overlong"],
        "campaign_id": ["nul", "number", "huge"],
    },
    "/campaigns": {"days": ["nul", "number"]},
    "/clicks": {
        "campaign_id": ["nul", "number", "huge"],
        "traffic_source_id": ["nul", "number", "huge"],
        "subid": ["nul", "nul_inside", "overlong"],
        "external_id": ["nul", "nul_inside", "overlong"],
        "country": ["nul", "overlong", "number"],
        "from": ["nul", "date"],
        "to": ["nul", "date"],
        "cursor": ["nul", "overlong"],
    },
}
CASES = [
    (page, name, kind)
    for page, fields in PAGE_FILTERS.items()
    for name, kinds in fields.items()
    for kind in kinds
]


@pytest.mark.slow
def test_every_filter_refuses_hostile_values_with_a_clear_422(admin: Admin) -> None:
    """Each filter of each list page answers a NUL, an overlong value, a bad date or a bad number
    with a 422 page naming that filter and saying what to do, never a 503 or a silent default."""
    wrong = []
    for page, name, kind in CASES:
        status, _, body = admin.call("GET", f"{page}?{name}={HOSTILE[kind]}")
        text = html.unescape(body)
        if status != 422 or f"“{name}”" not in text or "without filters" not in text:
            wrong.append(f"{page}?{name}=<{kind}>: {status} {text[-300:]!r}")
    assert wrong == [], "\n".join(wrong)


@pytest.mark.slow
def test_valid_filters_still_list(admin: Admin) -> None:
    """Well-formed filters (with spaces around text) answer 200 with the filter form filled."""
    for path in (
        "/conversions?campaign_id=1&type=sale&subid=+abc+&from=2026-01-01&to=2026-01-31",
        "/received-postbacks?outcome=ignored&reason=currency&subid=abc&cursor=12",
        "/deliveries?state=failed&target_kind=traffic_source&conversion_id=3",
        "/reports?group_by=campaign&from=2026-01-01&to=2026-01-31&timezone=Europe/Berlin",
        "/campaigns?period=last_30_days&q=+camp+&state=paused",
    ):
        status, _, body = admin.call("GET", path)
        assert status == 200, (path, body[-500:])


def _ignored_log(engine: Engine) -> list[tuple[int, str | None, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                t.received_postbacks.c.id,
                t.received_postbacks.c.subid,
                t.received_postbacks.c.reprocessed_by,
            )
            .where(t.received_postbacks.c.outcome == "ignored")
            .order_by(t.received_postbacks.c.id)
        )
        return [(row.id, row.subid, row.reprocessed_by) for row in rows]


@pytest.mark.slow
def test_reprocess_all_ignored_acts_on_the_filtered_page(
    admin: Admin, server: Server, engine: Engine
) -> None:
    """With a subid filter, the button names how many ignored postbacks it will re-run, and the
    form re-runs exactly those; the others stay as they were, and the page keeps its filter."""
    from clickloop.services.entities import get_settings

    key = get_settings(engine)["postback_key"]
    for subid in ("aaa", "aaa", "bbb", "ccc", "bbb"):
        assert request(server, "GET", f"/{key}/postback?subid={subid}&status=sale")[0] == 200
    status, _, page = admin.call("GET", "/received-postbacks?subid=bbb")
    assert status == 200
    assert "Re-process the 2 ignored postbacks shown by these filters" in html.unescape(page)
    form_html = page.split('reprocess-ignored"', 1)[1].split("</form>", 1)[0]
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form_html))
    assert fields["subid"] == "bbb" and "csrf" in fields
    assert request(server, "GET", f"/{key}/postback?subid=bbb&status=sale")[0] == 200
    status, headers, _ = admin.call("POST", "/received-postbacks/reprocess-ignored", fields)
    assert status == 303 and headers["location"].endswith("/received-postbacks?subid=bbb")
    rerun = [subid for _, subid, by in _ignored_log(engine) if by is not None]
    assert rerun == ["bbb", "bbb"]
    _, _, shown = admin.call("GET", "/received-postbacks?subid=bbb")
    assert "Re-processed 2 ignored postbacks" in html.unescape(shown)


def _sample(path: str) -> str:
    return path.replace("{id:int}", "1").replace("{kind}", "traffic_source")


METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@pytest.mark.slow
def test_every_ui_route_answers_405_with_allow(
    admin: Admin, engine: Engine, tmp_path: Path
) -> None:
    """Each route of the admin UI answers a method it does not take with 405 and an `Allow`
    header listing exactly the methods it takes."""

    async def nothing() -> None:
        return None

    app = create_web(engine, base_url="http://x", data_dir=tmp_path, on_change=nothing)
    routes = [route for route in app.routes if isinstance(route, Route)]
    assert len(routes) > 20
    wrong = []
    for route in routes:
        allowed = set(route.methods or ())
        for method in METHODS:
            if method in allowed:
                continue
            status, headers, _ = admin.call(
                method, _sample(route.path), {} if method != "GET" else None
            )
            got = {m.strip() for m in headers.get("allow", "").split(",") if m.strip()}
            if status != 405 or got != allowed:
                wrong.append(f"{method} {route.path}: {status} allow={headers.get('allow')}")
    status, headers, _ = admin.call("POST", "/static/admin.css", {})
    if (status, headers.get("allow")) != (405, "GET, HEAD"):
        wrong.append(f"POST /static: {status} allow={headers.get('allow')}")
    assert wrong == [], "\n".join(wrong)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/", "GET, HEAD"),
        ("/healthz", "GET, HEAD"),
        ("/metrics", "GET, HEAD"),
        ("/some-alias", "GET, HEAD"),
        ("/readyz", "GET, HEAD"),
        ("/{key}/postback", "GET, POST"),
    ],
)
def test_hot_paths_answer_405_with_allow(
    server: Server, engine: Engine, path: str, allowed: str
) -> None:
    """The tracker's own routes refuse other methods with 405 and say which ones they take (a
    wrong postback key stays a plain 404, which tells nothing)."""
    from clickloop.services.entities import get_settings

    path = path.replace("{key}", get_settings(engine)["postback_key"])
    for method in ("PUT", "DELETE", "PATCH") + (("POST",) if "POST" not in allowed else ()):
        req = urllib.request.Request(f"{server.base_url}{path}", data=b"", method=method)
        try:
            with urllib.request.urlopen(req, timeout=5) as answer:
                status, allow = answer.status, answer.headers.get("allow")
        except urllib.error.HTTPError as error:
            status, allow = error.code, error.headers.get("allow")
        assert (method, status, allow) == (method, 405, allowed)
