"""Admin sessions and the login throttle on a real server with two worker processes: a saved
cookie dies with logout, a password change and the user's removal; concurrent wrong passwords
from one address get no more verifications than the documented limit; a revoked token stops.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from clickloop.storage.sqlite_driver import sqlite3
from tests.conftest import Server
from tests.integration.test_users import Browserless, server_cli

pytestmark = pytest.mark.slow

LIMIT = 10  # failed logins per address in the window (docs/ui.md)


@pytest.fixture
def server_env() -> dict[str, str]:
    return {"CLICKLOOP_WORKERS": "2"}


@pytest.fixture
def web(server: Server) -> Server:
    """The server with one web user, alice."""
    done = server_cli(server, "user", "create", "alice", "--password-stdin", stdin="correct horse")
    assert done.returncode == 0, done.stderr
    return server


def replay(server: Server, cookies: dict[str, str]) -> int:
    """The status of /admin/settings for a browser holding these saved cookies."""
    client = Browserless(server)
    client.cookies = dict(cookies)
    return client.request("GET", "/admin/settings")[0]


def logged_in(server: Server) -> Browserless:
    client = Browserless(server)
    status, headers, _ = client.login("alice", "correct horse")
    assert status == 303 and headers["location"] == "/admin/settings"
    return client


def test_login_while_a_writer_holds_the_database(web: Server, database_url: str) -> None:
    """The login form reads without the writers' lock, so it shows while another writer holds
    it (at start the server's statistics take it a table at a time); a login, which counts the
    attempt, then answers 503 with the unavailable page, never a 500; and once the lock is
    gone it logs in."""
    if not database_url.startswith("sqlite"):
        pytest.skip("the lock stand-in is SQLite's")
    client = Browserless(web)
    form = {"csrf": client.csrf(), "username": "alice", "password": "correct horse"}
    holder = sqlite3.connect(database_url.split("///", 1)[1], isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        shown = client.request("GET", "/admin/login")
        refused = client.request("POST", "/admin/login", form)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert shown[0] == 200 and 'name="csrf"' in shown[2]
    assert refused[0] == 503 and "The database is unavailable right now" in refused[2]
    assert client.request("POST", "/admin/login", form)[0] == 303


def test_logout_ends_the_session_on_the_server(web: Server) -> None:
    """A cookie saved before logging out no longer opens an admin page, on any worker."""
    client = logged_in(web)
    saved = dict(client.cookies)
    assert all(replay(web, saved) == 200 for _ in range(4))
    token = client.csrf("/admin/settings")
    status, headers, _ = client.request("POST", "/admin/logout", {"csrf": token})
    assert status == 303 and headers["location"] == "/admin/login"
    assert all(replay(web, saved) == 303 for _ in range(4))


def test_password_change_ends_every_earlier_session(web: Server) -> None:
    """After a password change, the cookie the changing browser held before is dead too."""
    client = logged_in(web)
    saved = dict(client.cookies)
    form = {
        "csrf": client.csrf("/admin/settings"),
        "current_password": "correct horse",
        "new_password": "battery staple",
        "repeat_password": "battery staple",
    }
    assert client.request("POST", "/admin/settings/password", form)[0] == 303
    assert client.request("GET", "/admin/settings")[0] == 200
    assert replay(web, saved) == 303


def test_cli_password_reset_ends_every_session(web: Server) -> None:
    """`clickloop user password` (a forgotten or stolen password) logs every browser out."""
    saved = dict(logged_in(web).cookies)
    done = server_cli(web, "user", "password", "alice", "--password-stdin", stdin="new horse!")
    assert done.returncode == 0, done.stderr
    assert replay(web, saved) == 303


def test_removing_a_user_ends_their_sessions(web: Server) -> None:
    """`clickloop user remove` ends the user's sessions, even if the name is created again."""
    other = server_cli(web, "user", "create", "root", "--password-stdin", stdin="correct horse")
    assert other.returncode == 0, other.stderr  # alice is not the last admin
    saved = dict(logged_in(web).cookies)
    done = server_cli(web, "user", "remove", "alice", stdin="")
    assert done.returncode == 0, done.stderr
    assert replay(web, saved) == 303
    again = server_cli(web, "user", "create", "alice", "--password-stdin", stdin="correct horse")
    assert again.returncode == 0, again.stderr
    assert replay(web, saved) == 303
    missing = server_cli(web, "user", "remove", "nobody", stdin="")
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_concurrent_wrong_passwords_get_at_most_the_limit_of_verifications(web: Server) -> None:
    """200 wrong passwords at once from one address: exactly the limit are checked, the rest 429."""
    client = Browserless(web)
    token = client.csrf()
    form = {"csrf": token, "username": "alice", "password": "wrong horse"}

    def attempt(_: int) -> int:
        one = Browserless(web)
        one.cookies = dict(client.cookies)
        return one.request("POST", "/admin/login", form)[0]

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = Counter(pool.map(attempt, range(200)))
    assert statuses == Counter({401: LIMIT, 429: 200 - LIMIT})
    assert client.login("alice", "correct horse")[0] == 429


def test_revoked_token_is_refused_at_once(web: Server) -> None:
    """A token revoked with the CLI gets 401 on its very next request, on every worker."""
    made = web.cli("token", "create", "short-lived")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    token_id = str(json.loads(web.cli("token", "list").stdout.splitlines()[0])["id"])

    def status() -> int:
        request = urllib.request.Request(
            f"{web.base_url}/api/v1/campaigns", headers={"authorization": f"Bearer {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as refused:
            return refused.code

    assert all(status() == 200 for _ in range(4))
    revoked = web.cli("token", "revoke", token_id)
    assert revoked.returncode == 0, revoked.stderr
    assert all(status() == 401 for _ in range(4))
