"""`serve` updates the exchange rates by itself: with two worker processes exactly one fetches the
ECB file from a local stand-in; a failing source keeps the rates, logs why, and the dashboard and
the rates page show the last success and the last failure. The rates and users pages work."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler

import pytest
from sqlalchemy.engine import Engine

from clickloop.services import rate_updates, rates, users
from tests.conftest import Server, http_endpoint
from tests.integration.test_rate_updates import NOW, XML
from tests.integration.test_users import Browserless

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"
ECB_REQUESTS: list[str] = []


@pytest.fixture(scope="module")
def ecb_url() -> Iterator[str]:
    """A local ECB: /daily.xml is the file, /down answers 503; requests are recorded."""

    def answer(request: BaseHTTPRequestHandler) -> tuple[int, bytes]:
        ECB_REQUESTS.append(request.path)
        return (200, XML) if request.path == "/daily.xml" else (503, b"down for maintenance")

    with http_endpoint(answer) as base:
        yield base


@pytest.fixture
def server_env(ecb_url: str, request: pytest.FixtureRequest) -> dict[str, str]:
    path = getattr(request, "param", "/daily.xml")
    ECB_REQUESTS.clear()  # before the server starts: its workers fetch at once
    return {
        "CLICKLOOP_WORKERS": "2",
        "CLICKLOOP_RATES_AUTO_UPDATE": "on",
        "CLICKLOOP_RATES_URL": ecb_url + path,
        "CLICKLOOP_RATES_TIMEOUT_SECONDS": "5",
        "CLICKLOOP_LOG_LEVEL": "info",
    }


def wait_for_attempt(engine: Engine) -> rate_updates.UpdateStatus:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = rate_updates.read_status(engine)
        if status.succeeded_at or status.failed_at:
            return status
        time.sleep(0.1)
    raise AssertionError("serve never updated the rates")


def admin(server: Server, engine: Engine) -> Browserless:
    users.create_user(engine, "boss", PASSWORD, now=NOW)
    client = Browserless(server)
    assert client.login("boss", PASSWORD)[0] == 303
    return client


def test_serve_updates_the_rates_once_among_its_workers(server: Server, engine: Engine) -> None:
    """Started with two workers, serve stores the ECB rates fetched by one of them; the
    dashboard and the rates page show the success."""
    status = wait_for_attempt(engine)
    assert status.rates_as_of == "2026-11-02" and not status.failing
    with engine.connect() as conn:
        assert rates.read_rate_table(conn)["USD"] == Decimal("1.2")
    # Each worker checks as its start-up completes: once both have, one fetch in all.
    deadline = time.monotonic() + 30
    while server.log_path.read_text().count("Application startup complete") < 2:
        assert time.monotonic() < deadline, server.log_path.read_text()
        time.sleep(0.1)
    client = admin(server, engine)
    _, _, page = client.request("GET", "/admin/rates")
    assert ECB_REQUESTS == ["/daily.xml"]
    assert "rates of 2026-11-02" in page and 'data-currency="USD"' in page
    _, _, dashboard = client.request("GET", "/admin/")
    assert "last ECB update" in dashboard and "rates of 2026-11-02" in dashboard


@pytest.mark.parametrize("server_env", ["/down"], indirect=True)
def test_a_failing_source_keeps_the_rates_and_says_why(server: Server, engine: Engine) -> None:
    """A 503 from the source: the bundled rates stay, the log says so, the dashboard shows
    the failure and its reason; "update now" says the same on the rates page."""
    status = wait_for_attempt(engine)
    assert status.failing and "HTTP Error 503" in (status.failure or "")
    with engine.connect() as conn:
        assert rates.read_rate_table(conn) == rates.bundled_rates()[1]
    log = server.log_path.read_text()
    assert "the ECB update failed, the rates in force are kept" in log and "503" in log
    client = admin(server, engine)
    _, _, dashboard = client.request("GET", "/admin/")
    assert "Last update failed" in dashboard and "HTTP Error 503" in dashboard
    token = client.csrf("/admin/rates")
    status_code, headers, _ = client.request("POST", "/admin/rates/update", {"csrf": token})
    assert status_code == 303 and headers["location"] == "/admin/rates"
    _, _, page = client.request("GET", "/admin/rates")
    assert "The update failed, the rates in force are kept" in page


def test_rates_and_users_pages_change_what_they_say(server: Server, engine: Engine) -> None:
    """A rate set by hand shows as such; a bad one is refused with its reason. A user added as
    analyst can log in; the last admin cannot be disabled or demoted, with a message."""
    client = admin(server, engine)
    token = client.csrf("/admin/rates")
    client.request("POST", "/admin/rates", {"csrf": token, "currency": "rub", "per_eur": "98.5"})
    _, _, page = client.request("GET", "/admin/rates")
    assert "1 EUR = 98.5 RUB, set by hand." in page and "by hand</span>" in page
    client.request("POST", "/admin/rates", {"csrf": token, "currency": "RUB", "per_eur": "-1"})
    _, _, page = client.request("GET", "/admin/rates")
    assert "Rate not set: rate is not a positive number: -1." in page
    form = {"csrf": token, "username": "ana", "password": PASSWORD, "role": "analyst"}
    assert client.request("POST", "/admin/users", form)[0] == 303
    assert Browserless(server).login("ana", PASSWORD)[0] == 303
    boss = users.find_user(engine, "boss")
    client.request("POST", f"/admin/users/{boss.id}/disable", {"csrf": token})
    _, _, page = client.request("GET", "/admin/users")
    assert "Not done: user: cannot disable the last active admin" in page
    client.request("POST", f"/admin/users/{boss.id}/role", {"csrf": token, "role": "analyst"})
    _, _, page = client.request("GET", "/admin/users")
    assert "cannot demote the last active admin" in page
    assert users.find_user(engine, "boss").role == "admin"
    ana = users.find_user(engine, "ana")
    client.request(
        "POST", f"/admin/users/{ana.id}/password", {"csrf": token, "password": "new pass 123"}
    )
    assert Browserless(server).login("ana", "new pass 123")[0] == 303
