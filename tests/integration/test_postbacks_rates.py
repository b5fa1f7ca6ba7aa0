"""Exchange rates: bundled ECB data offline, the ECB daily file, rates set by hand."""

from __future__ import annotations

import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy.engine import Engine

from clickloop.errors import ConfigError, InvalidInput
from clickloop.services import rates
from clickloop.storage.db import make_engine

NOW = datetime(2026, 11, 2, tzinfo=UTC)
DAILY = "Date, USD, JPY, \n02 November 2026, 1.2000, 170.00, \n"


@pytest.fixture
def ecb_server() -> Iterator[str]:
    """A local stand-in for the ECB: /eurofxref.zip, /plain.csv and /broken."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("eurofxref.csv", DAILY)
    files = {"/eurofxref.zip": archive.getvalue(), "/plain.csv": DAILY.encode(), "/broken": b"<h"}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def table(engine: Engine) -> dict[str, Decimal]:
    with engine.connect() as conn:
        return rates.read_rate_table(conn)


def test_bundled_rates_work_out_of_the_box(engine: Engine) -> None:
    """With an empty table the ECB rates shipped in the package are in force."""
    as_of, bundled = rates.bundled_rates()
    assert {"USD", "JPY", "GBP"} <= set(bundled) and as_of.year >= 2024
    assert table(engine) == bundled


@pytest.mark.parametrize("path", ["/eurofxref.zip", "/plain.csv"])
def test_update_from_the_ecb_file(engine: Engine, ecb_server: str, path: str) -> None:
    """The daily file (zipped or plain) is stored and takes over from the bundled rates."""
    written = rates.update_rates(engine, now=NOW, url=ecb_server + path)
    assert [(r.currency, r.per_eur, r.as_of) for r in written] == [
        ("JPY", Decimal(170), "2026-11-02"),
        ("USD", Decimal("1.2"), "2026-11-02"),
    ]
    assert table(engine)["USD"] == Decimal("1.2")


def test_update_keeps_rates_set_by_hand(engine: Engine, ecb_server: str) -> None:
    """A manual rate survives an ECB update; RUB (not quoted by the ECB) can be set."""
    rates.set_rate(engine, "usd", "1.5", now=NOW)
    rates.set_rate(engine, "RUB", "95.5", now=NOW)
    rates.update_rates(engine, now=NOW, url=ecb_server + "/plain.csv")
    listed = {row.currency: row for row in rates.list_rates(engine)}
    assert (listed["USD"].per_eur, listed["USD"].source) == (Decimal("1.5"), "manual")
    assert (listed["RUB"].per_eur, listed["JPY"].source) == (Decimal("95.5"), "ecb")
    assert listed["GBP"].source == "bundled"


def test_update_offline_stores_the_bundled_rates(engine: Engine) -> None:
    """--offline stores the bundled file without any network access."""
    written = rates.update_rates(engine, now=NOW, offline=True)
    assert {row.currency: row.per_eur for row in written} == rates.bundled_rates()[1]


@pytest.mark.parametrize("path", ["/broken", "/missing"])
def test_update_refuses_what_is_not_an_ecb_file(engine: Engine, ecb_server: str, path: str) -> None:
    """A failed download or a foreign file changes nothing and says why."""
    with pytest.raises((ConfigError, ValueError)):
        rates.update_rates(engine, now=NOW, url=ecb_server + path)
    assert table(engine) == rates.bundled_rates()[1]


@pytest.mark.parametrize(
    ("code", "value"), [("EUR", "1"), ("US", "1"), ("USD", "0"), ("USD", "-2"), ("USD", "x")]
)
def test_set_rate_validates(engine: Engine, code: str, value: str) -> None:
    """EUR, malformed codes and non-positive rates are refused."""
    with pytest.raises(InvalidInput):
        rates.set_rate(engine, code, value, now=NOW)


def test_rates_survive_a_reconnect(database_url: str) -> None:
    """Rates are stored as exact decimal text and read back equal on a new engine."""
    first = make_engine(database_url)
    rates.set_rate(first, "XAB", "0.000123456789", now=NOW)
    first.dispose()
    second = make_engine(database_url)
    assert table(second)["XAB"] == Decimal("0.000123456789")
    second.dispose()
