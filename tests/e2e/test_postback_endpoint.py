"""The postback endpoint over HTTP against a real server: answers, bodies, the pixel, the
documented JS/PHP/Python examples, concurrency and an unavailable database.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, func, select
from sqlalchemy.engine import Engine

from clickloop.domain.postbacks import GIF_PIXEL
from clickloop.services import entities
from clickloop.storage import tables as t
from clickloop.storage.sqlite_driver import sqlite3
from tests.conftest import Server
from tests.e2e.test_clicks import request, wait_for_link
from tests.postback_world import World, add_clicks, make_world

DOCS = Path(__file__).resolve().parents[2] / "docs" / "postbacks.md"


@pytest.fixture
def world(engine: Engine) -> World:
    world = make_world(engine)
    add_clicks(engine, world, ["c1", "c2", "c3"], offer_id=world.plain_offer_id)
    return world


@pytest.fixture
def key(engine: Engine) -> str:
    return str(entities.get_settings(engine)["postback_key"])


def rows(engine: Engine, table: Table) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        result = conn.execute(select(table).order_by(*table.primary_key))
        return [dict(row._mapping) for row in result]


def count(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def example(name: str) -> str:
    """A code block of docs/postbacks.md, marked `<!-- example: name -->`."""
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(rf"<!-- example: {name} -->\n```\w+\n(.*?)```", text, re.DOTALL)
    assert match, f"example {name} missing from {DOCS}"
    return match.group(1)


@pytest.mark.parametrize(
    ("query", "status", "body"),
    [
        ("subid=c1&status=sale&payout=10", 200, b"OK"),
        ("subid=c1&status=sale&payout=10&return=done", 200, b"done"),
        ("subid=c1&status=sale&return=img", 200, GIF_PIXEL),
        ("subid=nope&status=sale&return=OK", 200, b"ERROR: subid not found: nope"),
        ("subid=c1&status=odd", 200, b"ERROR: unknown status odd"),
        ("subid=c1&status=test&ignore_status=test&return=OK", 200, b"OK"),
    ],
)
def test_get_answers(
    world: World, key: str, engine: Engine, server: Server, query: str, status: int, body: bytes
) -> None:
    """Success answers `return`/OK/GIF, ignored answers ERROR with the reason; each is logged."""
    answer = request(server, "GET", f"/{key}/postback?{query}")
    assert (answer[0], answer[2]) == (status, body)
    assert answer[1]["cache-control"] == "no-store"
    [entry] = rows(engine, t.received_postbacks)
    assert entry["query"] == query and entry["method"] == "GET"
    assert entry["remote_ip"] == "127.0.0.1"


def test_wrong_key_is_404_and_records_nothing(world: World, engine: Engine, server: Server) -> None:
    """A request with another key is not logged and creates nothing."""
    assert request(server, "GET", "/wrong/postback?subid=c1&status=sale")[0] == 404
    assert count(engine, t.received_postbacks) == 0 and count(engine, t.conversions) == 0


def test_post_form_and_json(world: World, key: str, engine: Engine, server: Server) -> None:
    """POST bodies in form and JSON encoding are accepted and logged verbatim."""
    import http.client

    for body, content_type in [
        ("subid=c1&status=lead&payout=1,2", "application/x-www-form-urlencoded"),
        ('{"subid": "c2", "status": "sale", "payout": 7.25}', "application/json"),
    ]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("POST", f"/{key}/postback", body=body, headers={"Content-Type": content_type})
        assert conn.getresponse().read() == b"OK"
        conn.close()
    stored = {r["subid"]: str(r["payout"]) for r in rows(engine, t.conversions)}
    assert stored == {"c1": "3.000000", "c2": "7.250000"}
    assert [r["content_type"] for r in rows(engine, t.received_postbacks)] == [
        "application/x-www-form-urlencoded",
        "application/json",
    ]


def test_log_keeps_the_request_headers(
    world: World, key: str, engine: Engine, server: Server
) -> None:
    """The log row keeps the first value of each kept header, the _subid cookie, the content
    type, and nothing else of the headers."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("GET", f"/{key}/postback?status=lead", skip_accept_encoding=True)
    for name, value in [
        ("User-Agent", "net-bot/1.0"),
        ("Referer", "https://net.example/r"),
        ("X-Real-IP", "198.51.100.7"),
        ("X-Real-IP", "203.0.113.1"),
        ("Cookie", "theme=dark; _subid=c3"),
        ("Content-Type", "text/plain"),
        ("Authorization", "Bearer secret"),
    ]:
        conn.putheader(name, value)
    conn.endheaders()
    assert conn.getresponse().read() == b"OK"
    conn.close()
    [entry] = rows(engine, t.received_postbacks)
    assert (entry["subid"], entry["outcome"], entry["content_type"]) == (
        "c3",
        "accepted",
        "text/plain",
    )
    assert entry["headers"] == {
        "user-agent": "net-bot/1.0",
        "referer": "https://net.example/r",
        "x-real-ip": "198.51.100.7",
        "cookie:_subid": "c3",
    }


def test_ignored_answer_status_setting(
    world: World, key: str, engine: Engine, server: Server
) -> None:
    """The ignored answer's status can be made 4xx by a setting (picked up without restart)."""
    entities.update_settings(engine, {"ignored_answer_status": 400})
    deadline_answer = None
    for _ in range(50):
        deadline_answer = request(server, "GET", f"/{key}/postback?subid=zz&status=sale")
        if deadline_answer[0] == 400:
            break
        threading.Event().wait(0.1)
    assert deadline_answer is not None and deadline_answer[0] == 400


def test_pixel_uses_the_click_cookie(
    world: World, key: str, engine: Engine, server: Server
) -> None:
    """A real click sets the cookie; the documented pixel then records a lead without subid."""
    wait_for_link(server, "camp")
    status, headers, _ = request(server, "GET", "/camp?x=1")
    assert status == 302
    cookie = headers["set-cookie"].split(";", 1)[0]
    subid = cookie.split("=", 1)[1]
    pixel = re.search(r'src="https://TRACKER/POSTBACK_KEY(/postback\?[^"]+)"', example("pixel"))
    assert pixel
    answer = request(server, "GET", f"/{key}{pixel.group(1)}", {"Cookie": cookie})
    assert answer[1]["content-type"] == "image/gif" and answer[2] == GIF_PIXEL
    [conversion] = rows(engine, t.conversions)
    assert (conversion["subid"], conversion["type"], str(conversion["payout"])) == (
        subid,
        "lead",
        "10.000000",
    )


def test_documented_python_example(world: World, key: str, engine: Engine, server: Server) -> None:
    """The Python example from the docs records a sale."""
    namespace: dict[str, Any] = {}
    exec(example("python"), namespace)
    answer = namespace["send_postback"](
        f"{server.base_url}/{key}/postback", "c1", status="sale", payout="100", tid="o-1"
    )
    assert answer == "OK"
    assert [(r["subid"], r["tid"], r["type"]) for r in rows(engine, t.conversions)] == [
        ("c1", "o-1", "sale")
    ]


@pytest.mark.skipif(shutil.which("php") is None, reason="php is not installed")
def test_documented_php_example(
    world: World, key: str, engine: Engine, server: Server, tmp_path: Path
) -> None:
    """The PHP example from the docs records a sale and returns the tracker's answer."""
    script = tmp_path / "postback.php"
    script.write_text(
        example("php")
        + "echo clickloop_postback($argv[1], $argv[2], ['status' => 'sale', 'payout' => '100']);\n"
        + "echo '|';\n"
        + "echo clickloop_postback($argv[1], 'nosuch', ['status' => 'sale']);\n"
    )
    done = subprocess.run(
        ["php", str(script), f"{server.base_url}/{key}/postback", "c2"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.stdout == "OK|ERROR: subid not found: nosuch", done.stderr
    assert [r["subid"] for r in rows(engine, t.conversions)] == ["c2"]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_documented_js_snippet(
    world: World, key: str, engine: Engine, server: Server, tmp_path: Path
) -> None:
    """The JS snippet, run by node with a minimal DOM, sends the sale with the page's subid."""
    snippet = example("js")
    code = "\n".join(re.findall(r"<script>(.*?)</script>", snippet, re.DOTALL))
    code = code.replace("https://TRACKER/POSTBACK_KEY", f"{server.base_url}/{key}")
    harness = (
        """
globalThis.window = {location: {search: '?x=1&subid=c3'}};
const requests = [];
globalThis.document = {
  createElement() {
    const img = {};
    Object.defineProperty(img, 'src', {set(url) { requests.push(fetch(url)); }});
    return img;
  },
  getElementsByTagName() { return [{append() {}}]; },
};
"""
        + code
        + """
Promise.all(requests).then(async (answers) => {
  for (const a of answers) { process.stdout.write(a.headers.get('content-type') + '\\n'); }
});
"""
    )
    script = tmp_path / "snippet.js"
    script.write_text(harness)
    done = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "image/gif", done.stderr
    [conversion] = rows(engine, t.conversions)
    assert (conversion["subid"], conversion["type"], conversion["original_currency"]) == (
        "c3",
        "sale",
        "EUR",
    )
    assert conversion["params"] == {"sub_id_10": "item 828"}


def test_identical_concurrent_requests_make_one_conversion(
    world: World, key: str, engine: Engine, server: Server
) -> None:
    """Sixteen simultaneous identical postbacks: all answered OK, one conversion, 16 log rows."""
    barrier = threading.Barrier(16)
    answers: list[tuple[int, bytes]] = []

    def fire() -> None:
        barrier.wait(timeout=10)
        status, _, body = request(server, "GET", f"/{key}/postback?subid=c1&status=sale&tid=x")
        answers.append((status, body))

    threads = [threading.Thread(target=fire) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == [(200, b"OK")] * 16
    assert count(engine, t.conversions) == 1
    outcomes = Counter(r["outcome"] for r in rows(engine, t.received_postbacks))
    assert outcomes == {"accepted": 1, "duplicate": 15}


@pytest.fixture
def locked_sqlite(database_url: str) -> Iterator[sqlite3.Connection]:
    """Another process-like holder of SQLite's write lock, as a stuck writer or full disk would."""
    if not database_url.startswith("sqlite"):
        pytest.skip("the lock stand-in is SQLite's; PostgreSQL is cut off in its own test")
    holder = sqlite3.connect(database_url.split("///", 1)[1], isolation_level=None)
    yield holder
    holder.close()


def test_storage_unavailable_is_503_and_writes_nothing(
    world: World, key: str, engine: Engine, server: Server, locked_sqlite: sqlite3.Connection
) -> None:
    """While the database refuses writes: 503 + Retry-After, and nothing is half-written."""
    request(server, "GET", f"/{key}/postback?subid=c1&status=lead")  # rules cached, one row
    locked_sqlite.execute("BEGIN EXCLUSIVE")
    status, headers, _ = request(server, "GET", f"/{key}/postback?subid=c2&status=sale")
    locked_sqlite.execute("ROLLBACK")
    assert status == 503 and headers["retry-after"] == "5"
    assert count(engine, t.conversions) == 1 and count(engine, t.received_postbacks) == 1
    assert request(server, "GET", f"/{key}/postback?subid=c2&status=sale")[2] == b"OK"
    assert count(engine, t.conversions) == 2


def test_postgresql_unavailable_is_503(
    world: World, key: str, engine: Engine, server: Server, database_url: str
) -> None:
    """Cutting PostgreSQL connections off gives 503, and service resumes when they are allowed."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    import psycopg

    name = urllib.parse.urlsplit(database_url).path.lstrip("/")
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
    request(server, "GET", f"/{key}/postback?subid=c1&status=lead")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        status, headers, _ = request(server, "GET", f"/{key}/postback?subid=c2&status=sale")
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert status == 503 and headers["retry-after"] == "5"
    assert request(server, "GET", f"/{key}/postback?subid=c2&status=sale")[2] == b"OK"
    assert count(engine, t.conversions) == 2 and count(engine, t.received_postbacks) == 2
