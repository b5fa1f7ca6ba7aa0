"""The daily ECB update: the XML file, failures that keep the rates in force, and the database
row that lets exactly one of many processes fetch."""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.engine import Engine

from clickloop.errors import ConfigError
from clickloop.services import rate_updates, rates
from clickloop.storage.db import make_engine

NOW = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01"
 xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
  <gesmes:subject>Reference rates</gesmes:subject>
  <gesmes:Sender><gesmes:name>European Central Bank</gesmes:name></gesmes:Sender>
  <Cube>
    <Cube time='2026-11-02'>
      <Cube currency='USD' rate='1.2000'/>
      <Cube currency='JPY' rate='170.00'/>
      <Cube currency='GBP' rate='0.86'/>
    </Cube>
  </Cube>
</gesmes:Envelope>
"""
BOMB = b"""<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">
<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><Cube><Cube time='2026-11-02'>
<Cube currency='USD' rate='1.5'/></Cube></Cube><x>&b;</x>"""


@dataclass
class EcbStandIn:
    """A local HTTP server in the ECB's place: each path answers as set in `routes`; `hang`
    holds a request until the test ends; every request is counted."""

    url: str = ""
    requests: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture(scope="module")
def ecb() -> Iterator[EcbStandIn]:
    stand_in = EcbStandIn()
    routes: dict[str, tuple[int, bytes]] = {
        "/daily.xml": (200, XML),
        "/garbage": (200, b"\x00\xffthis is no rates file"),
        "/html": (200, b"<html><body>Maintenance</body></html>"),
        "/bomb.xml": (200, BOMB),
        "/empty": (200, b""),
        "/down": (503, b"Service Unavailable"),
        "/gone": (404, b"Not Found"),
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            stand_in.requests.append(self.path)
            if self.path == "/hang":
                stand_in.release.wait(30)
                return
            if self.path == "/trickle":
                self.send_response(200)
                self.end_headers()
                while not stand_in.release.wait(0.05):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                return
            status, body = routes.get(self.path, (404, b""))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield stand_in
    stand_in.release.set()
    server.shutdown()
    server.server_close()


def in_force(engine: Engine) -> dict[str, Decimal]:
    with engine.connect() as conn:
        return rates.read_rate_table(conn)


def test_the_daily_xml_file_is_stored(engine: Engine, ecb: EcbStandIn) -> None:
    """The ECB's eurofxref-daily.xml gives each rate with its date, origin ECB."""
    rate_updates.update_now(engine, now=NOW, url=ecb.url + "/daily.xml", timeout=5)
    listed = {row.currency: row for row in rates.list_rates(engine)}
    assert (listed["USD"].per_eur, listed["USD"].as_of, listed["USD"].source) == (
        Decimal("1.2"),
        "2026-11-02",
        "ecb",
    )
    assert listed["CHF"].source == "bundled"
    status = rate_updates.read_status(engine)
    assert (status.succeeded_at, status.rates_as_of, status.failing) == (NOW, "2026-11-02", False)
    assert status.next_attempt_at == NOW + rate_updates.INTERVAL


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/garbage", "not an ECB rates file"),
        ("/html", "no dated Cube element"),
        ("/bomb.xml", "declares a DTD"),
        ("/empty", "fewer than two lines"),
        ("/down", "HTTP Error 503"),
        ("/gone", "HTTP Error 404"),
        ("/hang", "timed out"),
        ("/trickle", "no complete answer within"),
    ],
)
def test_a_failed_update_keeps_the_last_good_rates(
    engine: Engine, ecb: EcbStandIn, path: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage, an HTTP error or a timeout changes no rate, is logged with its reason, and is
    recorded as the last failure next to the last success; the scheduled retry is an hour on."""
    rate_updates.update_now(engine, now=NOW, url=ecb.url + "/daily.xml", timeout=5)
    good = in_force(engine)
    later = NOW + timedelta(days=1)
    with caplog.at_level(logging.WARNING, logger="clickloop.services.rate_updates"):
        assert rate_updates.refresh_if_due(engine, now=later, url=ecb.url + path, timeout=0.5)
    assert in_force(engine) == good
    status = rate_updates.read_status(engine)
    assert status.failing and reason in (status.failure or "")
    assert (status.succeeded_at, status.failed_at) == (NOW, later)
    assert status.next_attempt_at == later + rate_updates.RETRY_AFTER_FAILURE
    [line] = [r.getMessage() for r in caplog.records]
    assert "the rates in force are kept" in line and reason in line and path in line


def test_the_schedule_fetches_once_a_day(engine: Engine, ecb: EcbStandIn) -> None:
    """Due at first, then not until a day after the success; a failure retries after an hour."""
    url = ecb.url + "/daily.xml"
    assert rate_updates.refresh_if_due(engine, now=NOW, url=url, timeout=5)
    assert not rate_updates.refresh_if_due(
        engine, now=NOW + timedelta(hours=23), url=url, timeout=5
    )
    day = NOW + timedelta(days=1)
    assert rate_updates.refresh_if_due(engine, now=day, url=ecb.url + "/down", timeout=5)
    assert rate_updates.read_status(engine).failing
    assert not rate_updates.refresh_if_due(
        engine, now=day + timedelta(minutes=59), url=url, timeout=5
    )
    assert rate_updates.refresh_if_due(engine, now=day + timedelta(hours=1), url=url, timeout=5)
    assert not rate_updates.read_status(engine).failing


def test_a_claim_whose_process_died_is_taken_over(engine: Engine) -> None:
    """A claimed update never finished is due again once its lease ends."""
    assert rate_updates.claim_due(engine, now=NOW)
    assert not rate_updates.claim_due(engine, now=NOW + rate_updates.LEASE - timedelta(seconds=1))
    assert rate_updates.claim_due(engine, now=NOW + rate_updates.LEASE)


def test_one_of_many_processes_claims_the_update(database_url: str) -> None:
    """Sixteen engines (as many processes) claiming at once: exactly one wins."""
    engines = [make_engine(database_url) for _ in range(16)]
    barrier = threading.Barrier(len(engines))

    def claim(engine: Engine) -> bool:
        barrier.wait()
        return rate_updates.claim_due(engine, now=NOW)

    try:
        with ThreadPoolExecutor(len(engines)) as pool:
            claimed = list(pool.map(claim, engines))
    finally:
        for engine in engines:
            engine.dispose()
    assert claimed.count(True) == 1


def test_update_now_says_why_it_failed(engine: Engine, ecb: EcbStandIn) -> None:
    """Asked by a person, a failure is raised with its reason and recorded; the schedule is
    not moved."""
    assert rate_updates.claim_due(engine, now=NOW)
    rate_updates.refresh_if_due(
        engine, now=NOW + rate_updates.LEASE, url=ecb.url + "/daily.xml", timeout=5
    )
    scheduled = rate_updates.read_status(engine).next_attempt_at
    with pytest.raises(ConfigError, match="HTTP Error 503"):
        rate_updates.update_now(
            engine, now=NOW + timedelta(hours=2), url=ecb.url + "/down", timeout=5
        )
    status = rate_updates.read_status(engine)
    assert status.failing and status.next_attempt_at == scheduled
