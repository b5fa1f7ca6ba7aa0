"""A server's log as an operator reads it: JSON lines with times, and the access log."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

import pytest
from sqlalchemy.engine import Engine

from clickloop.services import entities, tokens, users
from tests.conftest import Server
from tests.e2e.test_admin_answers import NOW, PASSWORD, Admin
from tests.e2e.test_clicks import make_campaign, request, wait_for_link
from tests.e2e.test_hung_database import HangingProxy, proxied_server, proxy  # noqa: F401

pytestmark = pytest.mark.slow


@pytest.fixture
def server_env() -> dict[str, str]:
    return {
        "CLICKLOOP_LOG_LEVEL": "info",
        "CLICKLOOP_LOG_FORMAT": "json",
        "CLICKLOOP_ACCESS_LOG": "true",
    }


def test_json_logs_with_an_access_line_per_request(server: Server) -> None:
    """With LOG_FORMAT=json every log line is an object with time, level and logger, and the
    access log has a line for each request."""
    urllib.request.urlopen(f"{server.base_url}/healthz", timeout=5).read()
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"{server.base_url}/no-such-campaign", timeout=5)
    time.sleep(0.3)
    lines = [
        line
        for line in server.log_path.read_text().splitlines()
        if line and not line.startswith("clickloop serving on ")
    ]
    records = [json.loads(line) for line in lines]
    assert records
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    access = [r["message"] for r in records if r["logger"] == "uvicorn.access"]
    assert any('"GET /healthz HTTP/1.1" 200' in m for m in access)
    assert any('"GET /no-such-campaign HTTP/1.1" 404' in m for m in access)


def test_the_access_log_never_shows_the_postback_key(server: Server) -> None:
    """The postback key is in the postback URL's path; its access-log line shows it masked."""
    key = server.cli("postback-key", "show").stdout.split()[0]
    assert len(key) >= 16
    urllib.request.urlopen(f"{server.base_url}/{key}/postback?subid=x&status=sale", timeout=5)
    time.sleep(0.3)
    log = server.log_path.read_text()
    assert "/postback?subid=x" in log
    assert key not in log


def messages(server: Server) -> list[str]:
    """The server log's messages (JSON lines; other lines, e.g. the start banner, skipped)."""
    found = []
    for line in server.log_path.read_text().splitlines():
        if line.startswith("{"):
            found.append(json.loads(line)["message"])
    return found


def test_logins_settings_changes_and_ignored_postbacks_each_get_a_line(
    server: Server, engine: Engine
) -> None:
    """A failed and a successful login (user and address), a settings change through the UI
    and one through the API (who, which key) and an ignored postback (why, which subid) are
    each one line."""
    users.create_user(engine, "admin", PASSWORD, now=NOW)
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    page = opener.open(f"{server.base_url}/admin/login", timeout=10).read().decode()
    form = {"csrf": Admin.csrf(page), "username": "admin", "password": "wrong horse battery"}
    with pytest.raises(urllib.error.HTTPError):
        opener.open(f"{server.base_url}/admin/login", urllib.parse.urlencode(form).encode())
    admin = Admin(server)
    form = {"currency": "USD", "timezone": "Asia/Tokyo", "ignored_answer_status": "200"}
    page = admin.call("GET", "/settings")[2]
    assert admin.call("POST", "/settings", form | {"csrf": admin.csrf(page)})[0] == 303
    token = tokens.create_token(engine, name="ops", now=NOW)
    token_id = tokens.list_tokens(engine)[0]["id"]
    change = urllib.request.Request(
        f"{server.base_url}/api/v1/settings",
        data=json.dumps({"timezone": "Europe/Berlin"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="PATCH",
    )
    urllib.request.urlopen(change, timeout=10).read()
    key = entities.get_settings(engine)["postback_key"]
    urllib.request.urlopen(
        f"{server.base_url}/{key}/postback?subid=nosuchclick&status=sale", timeout=10
    ).read()
    time.sleep(0.3)
    logged = messages(server)
    assert "login failed: user 'admin' from 127.0.0.1" in logged
    assert "login: user 'admin' from 127.0.0.1" in logged
    assert "settings changed by user admin: timezone" in logged
    assert f"settings changed by API token {token_id}: timezone" in logged
    ignored = [m for m in logged if " ignored: " in m]
    assert len(ignored) == 1 and ignored[0].endswith("(subid 'nosuchclick')"), ignored
    assert key not in ignored[0]


def test_a_database_outage_logs_its_start_and_its_end_once(
    proxied_server: Server,  # noqa: F811
    proxy: HangingProxy,  # noqa: F811
    engine: Engine,
) -> None:
    """Twenty clicks refused while PostgreSQL hangs give one line when the outage starts and
    one when a click succeeds again (with the count), not a line per refused request."""
    make_campaign(engine)
    wait_for_link(proxied_server, "go")
    assert request(proxied_server, "GET", "/go?clickid=before")[0] == 302
    proxy.hang()
    refused = [request(proxied_server, "GET", f"/go?clickid=hung{n}")[0] for n in range(20)]
    assert set(refused) == {503}
    proxy.resume()
    deadline = time.monotonic() + 20
    while request(proxied_server, "GET", "/go?clickid=after")[0] != 302:
        assert time.monotonic() < deadline, "clicks did not recover"
        time.sleep(0.2)
    log = proxied_server.log_path.read_text()
    assert log.count("database outage: ") == 1
    assert log.count("database outage over after ") == 1
    assert "not recorded" not in log
    over = log.split("database outage over after ")[1].splitlines()[0]
    assert over.endswith("requests refused") and int(over.split()[-3]) >= 20
