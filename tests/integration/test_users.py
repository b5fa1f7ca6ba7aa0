"""Admin users: argon2 hashes, login checks, password changes, and the `user` CLI."""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from clickloop.errors import Conflict, InvalidInput, NotFound
from clickloop.services import sessions, users
from clickloop.storage import tables as t
from tests.conftest import Server

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_password_is_stored_as_an_argon2_hash(engine: Engine) -> None:
    """The users table holds an argon2id hash, never the password."""
    users.create_user(engine, "alice", "correct horse", now=NOW)
    with engine.connect() as conn:
        stored = conn.execute(select(t.users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored


def test_an_unknown_username_costs_a_verification_like_a_real_hash() -> None:
    """The written-out hash verified for unknown usernames has the parameters the hasher gives
    real passwords today (a new argon2-cffi default would make the two paths differ in time)."""
    assert not users.PasswordHasher().check_needs_rehash(users.DUMMY_HASH)
    stored = users.PasswordHasher().hash("correct horse")
    assert stored.split("$")[1:4] == users.DUMMY_HASH.split("$")[1:4]


def test_authenticate_accepts_only_the_right_password(engine: Engine) -> None:
    """The right password returns the user; a wrong one or an unknown name returns None."""
    user_id = users.create_user(engine, "alice", "correct horse", now=NOW)
    found = users.authenticate(engine, "alice", "correct horse")
    assert found is not None and found.id == user_id
    assert users.authenticate(engine, "alice", "wrong horse") is None
    assert users.authenticate(engine, "bob", "correct horse") is None


def test_duplicate_username_and_short_password_are_refused(engine: Engine) -> None:
    """A taken username is a Conflict and a password under 8 characters is invalid."""
    users.create_user(engine, "alice", "correct horse", now=NOW)
    with pytest.raises(Conflict):
        users.create_user(engine, "alice", "another one", now=NOW)
    with pytest.raises(InvalidInput):
        users.create_user(engine, "bob", "short", now=NOW)


def test_change_password_needs_the_current_one_and_ends_sessions(engine: Engine) -> None:
    """A wrong current password is refused; a right one swaps passwords and ends sessions."""
    user_id = users.create_user(engine, "alice", "correct horse", now=NOW)
    session_id = sessions.open_session(engine, user_id, now=NOW)
    with pytest.raises(InvalidInput):
        users.change_password(engine, user_id, "not it", "battery staple")
    assert sessions.session_user(engine, session_id, now=NOW) is not None
    users.change_password(engine, user_id, "correct horse", "battery staple")
    assert sessions.session_user(engine, session_id, now=NOW) is None
    assert users.authenticate(engine, "alice", "correct horse") is None
    assert users.authenticate(engine, "alice", "battery staple") is not None


def test_sessions_end_on_logout_removal_and_expiry(engine: Engine) -> None:
    """A session ends when ended, when its user is removed, and 14 days after it began."""
    users.create_user(engine, "root", "correct horse", now=NOW)  # alice is not the last admin
    user_id = users.create_user(engine, "alice", "correct horse", now=NOW)
    ended, removed = (sessions.open_session(engine, user_id, now=NOW) for _ in range(2))
    sessions.end_session(engine, ended)
    assert sessions.session_user(engine, ended, now=NOW) is None
    found = sessions.session_user(engine, removed, now=NOW)
    assert found is not None and found.username == "alice"
    assert sessions.session_user(engine, removed, now=NOW + timedelta(days=14)) is None
    users.remove_user(engine, "alice")
    users.create_user(engine, "alice", "correct horse", now=NOW)
    assert sessions.session_user(engine, removed, now=NOW) is None
    with pytest.raises(NotFound):
        users.remove_user(engine, "nobody")


def test_cli_user_create_reads_the_password_from_stdin(database_url: str, tmp_path: Path) -> None:
    """`clickloop user create NAME --password-stdin` makes a user that can log in."""
    env = {"CLICKLOOP_DATABASE_URL": database_url, "CLICKLOOP_DATA_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "clickloop.cli", "user", "create", "carol", "--password-stdin"]
    done = subprocess.run(
        command, input="s3cret-pass\n", env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    again = subprocess.run(
        command, input="s3cret-pass\n", env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    from clickloop.storage.db import make_engine

    engine = make_engine(database_url)
    try:
        assert users.authenticate(engine, "carol", "s3cret-pass") is not None
    finally:
        engine.dispose()


# --- the web UI's login, session and CSRF checks, over HTTP against a real server -------------


class Browserless:
    """A cookie-keeping HTTP client that never follows redirects."""

    def __init__(self, server: Server) -> None:
        self.port = server.port
        self.cookies: dict[str, str] = {}

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, http.client.HTTPMessage, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        sent = dict(headers or {})
        if self.cookies:
            sent["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            sent["content-type"] = "application/x-www-form-urlencoded"
        connection.request(method, path, body=body, headers=sent)
        answer = connection.getresponse()
        text = answer.read().decode()
        for header in answer.headers.get_all("set-cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        connection.close()
        return answer.status, answer.headers, text

    def csrf(self, path: str = "/admin/login") -> str:
        _, _, page = self.request("GET", path)
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found is not None, page
        return found.group(1)

    def login(self, username: str, password: str) -> tuple[int, http.client.HTTPMessage, str]:
        token = self.csrf()
        form = {"csrf": token, "username": username, "password": password}
        return self.request("POST", "/admin/login?next=/settings", form)


@pytest.fixture
def web(server: Server) -> Server:
    """The server with one web user, alice."""
    done = server_cli(server, "user", "create", "alice", "--password-stdin", stdin="correct horse")
    assert done.returncode == 0, done.stderr
    return server


def server_cli(server: Server, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clickloop.cli", *args],
        input=stdin + "\n",
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _postback_key(server: Server) -> str:
    return server.cli("postback-key", "show").stdout.split()[0]


def test_pages_without_a_session_redirect_to_login(web: Server) -> None:
    """Every admin page sends an anonymous visitor to the login page, remembering the page."""
    client = Browserless(web)
    for path in ("/admin/", "/admin/campaigns", "/admin/reports?group_by=offer"):
        status, headers, _ = client.request("GET", path)
        assert status == 303
        assert headers["location"].startswith("/admin/login")
    _, headers, _ = client.request("GET", "/admin/campaigns")
    assert headers["location"] == "/admin/login?next=%2Fcampaigns"


def test_post_without_a_session_changes_nothing(web: Server) -> None:
    """An anonymous POST to an action is redirected to login and does not run."""
    key = _postback_key(web)
    status, headers, _ = Browserless(web).request(
        "POST", "/admin/settings/rotate-key", {"csrf": "x"}
    )
    assert status == 303 and headers["location"].startswith("/admin/login")
    assert _postback_key(web) == key


def test_bad_or_missing_csrf_token_is_refused_with_403(web: Server) -> None:
    """A logged-in POST whose CSRF token is wrong or absent gets 403 and does not run."""
    client = Browserless(web)
    status, headers, _ = client.login("alice", "correct horse")
    assert status == 303 and headers["location"] == "/admin/settings"
    key = _postback_key(web)
    assert client.request("POST", "/admin/settings/rotate-key", {"csrf": "forged"})[0] == 403
    assert client.request("POST", "/admin/settings/rotate-key", {})[0] == 403
    assert _postback_key(web) == key
    token = client.csrf("/admin/settings")
    assert client.request("POST", "/admin/settings/rotate-key", {"csrf": token})[0] == 303
    assert _postback_key(web) != key


def test_login_form_itself_needs_its_csrf_token(web: Server) -> None:
    """A login POST without the token from the login page is refused (login CSRF)."""
    client = Browserless(web)
    form = {"csrf": "forged", "username": "alice", "password": "correct horse"}
    status, _, _ = client.request("POST", "/admin/login", form)
    assert status == 403
    assert client.request("GET", "/admin/")[0] == 303


def test_wrong_password_and_unknown_user_get_the_same_answer(web: Server) -> None:
    """A wrong password and an unknown username both get 401 and one identical message."""
    pages = []
    for username, password in (("alice", "wrong horse"), ("mallory", "correct horse")):
        status, _, page = Browserless(web).login(username, password)
        assert status == 401
        assert "Wrong username or password." in page
        pages.append(re.sub(r'value="[^"]*"', "", page))
    assert pages[0] == pages[1]


def test_session_cookie_is_httponly_lax_and_secure_behind_https(web: Server) -> None:
    """The cookie is HttpOnly and SameSite=Lax; Secure when the request came over https."""
    _, headers, _ = Browserless(web).request("GET", "/admin/login")
    plain = headers["set-cookie"].lower()
    assert "httponly" in plain and "samesite=lax" in plain and "secure" not in plain
    _, headers, _ = Browserless(web).request(
        "GET", "/admin/login", headers={"x-forwarded-proto": "https"}
    )
    assert "secure" in headers["set-cookie"].lower()


def test_login_never_redirects_off_site(web: Server) -> None:
    """A `next` pointing at another host is replaced by the dashboard."""
    client = Browserless(web)
    token = client.csrf()
    form = {"csrf": token, "username": "alice", "password": "correct horse"}
    _, headers, _ = client.request("POST", "/admin/login?next=//evil.example/", form)
    assert headers["location"] == "/admin/"


def test_new_password_ends_other_sessions(web: Server) -> None:
    """After a password change, a session opened with the old password is logged out."""
    first, second = Browserless(web), Browserless(web)
    first.login("alice", "correct horse")
    second.login("alice", "correct horse")
    assert second.request("GET", "/admin/")[0] == 200
    token = first.csrf("/admin/settings")
    form = {
        "csrf": token,
        "current_password": "correct horse",
        "new_password": "battery staple",
        "repeat_password": "battery staple",
    }
    assert first.request("POST", "/admin/settings/password", form)[0] == 303
    assert first.request("GET", "/admin/")[0] == 200
    assert second.request("GET", "/admin/")[0] == 303


def test_repeated_failures_lock_the_address_out_for_a_while(web: Server) -> None:
    """After ten failed logins from one address, even the right password gets 429."""
    client = Browserless(web)
    for _ in range(10):
        assert client.login("alice", "wrong horse")[0] == 401
    status, _, page = client.login("alice", "correct horse")
    assert status == 429
    assert "Too many failed logins" in page


def test_pages_of_missing_entities_answer_404(web: Server) -> None:
    """A logged-in request for an entity that does not exist gets a 404 page, not an error."""
    client = Browserless(web)
    client.login("alice", "correct horse")
    for path in ("/admin/campaigns/999", "/admin/offers/999", "/admin/deliveries/999"):
        status, _, page = client.request("GET", path)
        assert status == 404, path
        assert "not found" in page


def test_templates_with_fields_ask_for_them_and_fill_the_entity(web: Server) -> None:
    """A template's fields are asked for on the new-entity page and land in what it creates."""
    from clickloop.catalog.templates import load_catalog

    catalog = load_catalog()
    client = Browserless(web)
    client.login("alice", "correct horse")
    source = next(t for t in catalog.traffic_sources if t.fields and not t.fields[0].choices)
    network = next(t for t in catalog.affiliate_networks if any(f.choices for f in t.fields))
    for kind, template in (("traffic-sources", source), ("affiliate-networks", network)):
        page_path = f"/admin/{kind}/new?template={template.key}"
        _, _, page = client.request("GET", page_path)
        form = {"csrf": client.csrf(page_path)}
        for field in template.fields:
            assert f'name="field_{field.name}"' in page
            form[f"field_{field.name}"] = field.choices[-1] if field.choices else "acct42"
        status, headers, _ = client.request("POST", page_path, form)
        assert status == 303, (kind, template.key)
        _, _, created = client.request("GET", headers["location"])
        value = form[f"field_{template.fields[0].name}"]
        assert value in created, (kind, template.key)


def test_a_traffic_source_page_lists_the_campaigns_that_use_it(web: Server, engine: Engine) -> None:
    """Each campaign on the source's page comes with its link carrying the source's parameters."""
    from clickloop.services import entities

    params = [{"name": "external_id", "param": "clickid", "macro": "{click_id}"}]
    source = entities.create_traffic_source(engine, name="Push", now=NOW, parameters=params)
    other = entities.create_traffic_source(engine, name="Other", now=NOW)
    offer = entities.create_offer(engine, name="O", url="https://offer.example/", now=NOW)
    for name, alias, source_id in (("Mine", "mine1", source), ("Theirs", "their1", other)):
        entities.create_campaign(
            engine, name=name, alias=alias, now=NOW, offers=[(offer, 1)],
            traffic_source_id=source_id,
        )  # fmt: skip
    client = Browserless(web)
    client.login("alice", "correct horse")
    status, _, page = client.request("GET", f"/admin/traffic-sources/{source}")
    assert status == 200
    assert ">Mine</a>" in page and "/mine1?clickid={click_id}" in page
    assert "Theirs" not in page
