"""Click durability on a real server: an acknowledged click survives SIGKILL mid-stream, and a
click the database cannot take is a 503 with Retry-After that leaves nothing behind."""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from clickloop.storage import tables as t
from clickloop.storage.sqlite_driver import sqlite3
from tests.conftest import Server
from tests.e2e.test_clicks import make_campaign, request, wait_for_link

CLIENTS = 16
KILL_AFTER_ACKNOWLEDGED = 600


def _click_until_refused(server: Server, client: int, acknowledged: list[str]) -> None:
    """Send clicks on one keep-alive connection; record the subid of every complete 302."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    n = 0
    try:
        while True:
            n += 1
            conn.request("GET", f"/go?clickid=c{client}-{n}&zone={n}", headers={"User-Agent": "t"})
            answer = conn.getresponse()
            answer.read()
            assert answer.status == 302, answer.status
            cookie = answer.getheader("set-cookie") or ""
            acknowledged.append(cookie.split(";", 1)[0].removeprefix("_subid="))
    except (OSError, http.client.HTTPException):
        return  # the server is gone: this request was never acknowledged
    finally:
        conn.close()


def test_acknowledged_clicks_survive_sigkill(server: Server, engine: Engine) -> None:
    """Every subid a client received in a 302 is in the database after a SIGKILL mid-stream."""
    make_campaign(engine)
    wait_for_link(server, "go")
    acknowledged: list[str] = []
    clients = [
        threading.Thread(target=_click_until_refused, args=(server, n, acknowledged))
        for n in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < KILL_AFTER_ACKNOWLEDGED and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()  # while all clients still have requests in flight
    for client in clients:
        client.join(30)
    assert len(acknowledged) >= KILL_AFTER_ACKNOWLEDGED
    assert all(len(subid) == 23 for subid in acknowledged)
    with engine.connect() as conn:
        stored = set(conn.scalars(select(t.clicks.c.subid)))
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged clicks lost, e.g. {sorted(missing)[:3]}"


def _count_clicks(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.clicks)).scalar_one())


def test_click_is_503_with_retry_after_while_storage_is_unavailable(
    server: Server, engine: Engine, database_url: str
) -> None:
    """No redirect without a durable row: 503 + Retry-After, no row, and service then resumes."""
    make_campaign(engine)
    wait_for_link(server, "go")
    assert request(server, "GET", "/go?clickid=before")[0] == 302
    if database_url.startswith("sqlite"):
        # Another holder of SQLite's write lock, as a stuck process or a full disk would be:
        # the writer gives up after busy_timeout.
        holder = sqlite3.connect(database_url.split("///", 1)[1], isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        status, headers, _ = request(server, "GET", "/go?clickid=during")
        holder.execute("ROLLBACK")
        holder.close()
    else:
        import psycopg

        name = urllib.parse.urlsplit(database_url).path.lstrip("/")
        admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            status, headers, _ = request(server, "GET", "/go?clickid=during")
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert status == 503 and headers["retry-after"] == "1"
    assert "location" not in headers and "set-cookie" not in headers
    assert _count_clicks(engine) == 1
    assert request(server, "GET", "/go?clickid=after")[0] == 302
    with engine.connect() as conn:
        stored = set(conn.scalars(select(t.clicks.c.external_id)))
    assert stored == {"before", "after"}


def _postback_until_refused(server: Server, key: str, subids: list[str], sent: list[int]) -> None:
    """Postbacks for clicks already made, with status changes, rebills, costs and zone
    overwrites, until the server is gone; `sent` gets each answer's status."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    statuses = ("lead", "sale", "rejected", "rebill", "sale")
    n = 0
    try:
        while True:
            n += 1
            subid = subids[n % len(subids)]
            query = urllib.parse.urlencode(
                {
                    "subid": subid,
                    "status": statuses[n % len(statuses)],
                    "tid": "r" if n % 5 == 3 else "",
                    "payout": str(n % 7),
                    "cost": "0.5" if n % 3 == 0 else "",
                    "zone": f"z{n % 4}",
                    "sub_id_1": f"z{n % 4}" if n % 4 == 0 else "",
                }
            )
            conn.request("GET", f"/{key}/postback?{query}")
            answer = conn.getresponse()
            answer.read()
            sent.append(answer.status)
    except (OSError, http.client.HTTPException):
        return
    finally:
        conn.close()


def test_report_cubes_equal_the_raw_tables_after_sigkill(server: Server, engine: Engine) -> None:
    """Clicks and postbacks in flight when the server is SIGKILLed leave the report cubes equal
    to what a rebuild computes from the raw tables: a change and its cube delta commit together."""
    from clickloop.storage import report_cubes
    from tests.integration.test_report_cubes import cube_rows

    workers, acknowledged, sent = _traffic(server, engine, clients=4)
    _wait_for(acknowledged, sent, 300)
    server.kill()
    for worker in workers:
        worker.join(30)
    assert len(sent) >= 300
    kept = cube_rows(engine)
    assert kept
    report_cubes.rebuild(engine)
    assert cube_rows(engine) == kept


def test_rebuilds_amid_clicks_and_postbacks_keep_the_cubes_exact(
    server: Server, engine: Engine
) -> None:
    """`reports rebuild` while clicks and postbacks (new conversions, status changes, cost and
    zone overwrites) keep arriving: no writer fails (on PostgreSQL every writer takes the cubes
    in one order, so none waits in a cycle), and the cubes end equal to a rebuild."""
    from clickloop.storage import report_cubes
    from tests.integration.test_report_cubes import cube_rows

    workers, acknowledged, sent = _traffic(server, engine, clients=2)
    for goal in (100, 200, 300):
        _wait_for(acknowledged, sent, goal)
        report_cubes.rebuild(engine)
    alive = [worker.is_alive() for worker in workers]  # a click answered but 302 ends its client
    server.kill()
    for worker in workers:
        worker.join(30)
    assert alive == [True] * len(workers)
    assert len(sent) >= 300 and all(status < 500 for status in sent)
    kept = cube_rows(engine)
    report_cubes.rebuild(engine)
    assert cube_rows(engine) == kept


def _traffic(
    server: Server, engine: Engine, *, clients: int
) -> tuple[list[threading.Thread], list[str], list[int]]:
    """A campaign with `sub_id_1` marked for the report cubes and 40 clicks, then `clients`
    threads clicking and as many sending postbacks for those clicks, until the server is gone:
    the threads, the acknowledged subids and the postbacks' statuses."""
    from clickloop.services import entities

    make_campaign(engine)
    entities.update_settings(engine, {"report_marked_dimensions": ["sub_id_1"]})
    wait_for_link(server, "go")
    first: list[str] = []
    _click_until_count(server, first, 40)
    key = str(entities.get_settings(engine)["postback_key"])
    acknowledged: list[str] = []
    sent: list[int] = []
    workers = [
        threading.Thread(target=_click_until_refused, args=(server, n, acknowledged))
        for n in range(clients)
    ] + [
        threading.Thread(target=_postback_until_refused, args=(server, key, first, sent))
        for _ in range(clients)
    ]
    for worker in workers:
        worker.start()
    return workers, acknowledged, sent


def _wait_for(acknowledged: list[str], sent: list[int], count: int) -> None:
    """Until `count` clicks and `count` postbacks were answered (a minute at most)."""
    deadline = time.monotonic() + 60
    while (len(acknowledged) < count or len(sent) < count) and time.monotonic() < deadline:
        time.sleep(0.01)


def test_the_server_folds_the_conversion_moves_without_a_report(
    server: Server, engine: Engine
) -> None:
    """The moves postbacks leave in cube_moves reach the cubes by the server's follower alone
    (every 0.5 s), not only when a report settles them."""
    from clickloop.services import entities

    make_campaign(engine)
    wait_for_link(server, "go")
    subids: list[str] = []
    _click_until_count(server, subids, 5)
    key = str(entities.get_settings(engine)["postback_key"])
    for subid in subids:
        assert (
            request(server, "GET", f"/{key}/postback?subid={subid}&status=lead&payout=2")[0] == 200
        )
    campaigns = t.report_cubes["campaigns"].c
    leads = select(func.coalesce(func.sum(campaigns.ct_lead_n), 0))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(leads).scalar() == 5:
                break
        time.sleep(0.1)
    with engine.connect() as conn:
        assert conn.execute(leads).scalar() == 5
        assert conn.execute(select(func.count()).select_from(t.cube_moves)).scalar() == 0


def _click_until_count(server: Server, subids: list[str], count: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    for n in range(count):
        conn.request("GET", f"/go?clickid=f{n}&zone=z{n % 3}&cost=0.1", headers={"User-Agent": "t"})
        answer = conn.getresponse()
        answer.read()
        cookie = answer.getheader("set-cookie") or ""
        subids.append(cookie.split(";", 1)[0].removeprefix("_subid="))
    conn.close()
