"""When exchange rates are updated from the ECB, and how the last updates went.

`serve` checks every few minutes in each of its processes whether the daily update is due; the
one row of `rate_updates` decides who fetches: a process claims the update by moving
`next_attempt_at` forward in one conditional UPDATE (a row lock on PostgreSQL, the write lock on
SQLite), so among all processes and nodes sharing the database exactly one downloads. A failure
keeps the rates in force and is retried an hour later; a success makes the next one due a day
later. `update_now` (CLI, admin page) records its outcome in the same row.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Update, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from clickloop.errors import ConfigError
from clickloop.services import rates
from clickloop.storage import tables as t
from clickloop.storage.conversions import RateRow

log = logging.getLogger(__name__)

INTERVAL = timedelta(days=1)
RETRY_AFTER_FAILURE = timedelta(hours=1)
# A claimed update not finished by then (its process died) is claimed again: far above the
# download timeout.
LEASE = timedelta(minutes=10)
CHECK_SECONDS = 300.0
_ROW_ID = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateSettings:
    """Where the ECB file is read from, how long a download may take, and whether `serve`
    updates the rates by itself every day."""

    url: str = rates.ECB_DAILY_URL
    timeout: float = rates.DOWNLOAD_TIMEOUT
    daily: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateStatus:
    """How the ECB updates went: the last success (and the date of its rates), the last failure
    and its reason, and when the next scheduled one is due."""

    next_attempt_at: datetime | None = None
    attempted_at: datetime | None = None
    succeeded_at: datetime | None = None
    rates_as_of: str | None = None
    failed_at: datetime | None = None
    failure: str | None = None

    @property
    def failing(self) -> bool:
        """The last attempt failed (no success since the last failure)."""
        if self.failed_at is None:
            return False
        return self.succeeded_at is None or self.failed_at > self.succeeded_at


def read_status(engine: Engine) -> UpdateStatus:
    """The record of ECB updates; empty when none was ever tried."""
    with engine.connect() as conn:
        row = conn.execute(select(t.rate_updates).where(t.rate_updates.c.id == _ROW_ID)).first()
    if row is None:
        return UpdateStatus()
    return UpdateStatus(
        next_attempt_at=row.next_attempt_at,
        attempted_at=row.attempted_at,
        succeeded_at=row.succeeded_at,
        rates_as_of=row.rates_as_of,
        failed_at=row.failed_at,
        failure=row.failure,
    )


def update_now(engine: Engine, *, now: datetime, url: str, timeout: float) -> list[RateRow]:
    """Update the rates from the ECB file at `url` now (a person asked), recording the outcome;
    ConfigError says why it failed (the rates in force are kept)."""
    with engine.begin() as conn:
        _ensure_row(conn, now)
        conn.execute(_row_update().values(attempted_at=now))
    return _update(engine, now=now, url=url, timeout=timeout, retry_at=None)


def claim_due(engine: Engine, *, now: datetime) -> bool:
    """Whether this process takes the scheduled update now: it is due and no other took it."""
    c = t.rate_updates.c
    with engine.begin() as conn:
        _ensure_row(conn, now)
        claimed = conn.execute(
            _row_update()
            .where(c.next_attempt_at <= now)
            .values(next_attempt_at=now + LEASE, attempted_at=now)
        )
        return claimed.rowcount == 1


def refresh_if_due(engine: Engine, *, now: datetime, url: str, timeout: float) -> bool:
    """Run the scheduled update if it is due and this process claims it; whether it did."""
    if not claim_due(engine, now=now):
        return False
    retry_at = now + RETRY_AFTER_FAILURE
    try:
        _update(engine, now=now, url=url, timeout=timeout, retry_at=retry_at)
    except ConfigError as exc:  # recorded by _update; the rates in force stay
        log.warning(
            "exchange rates: the ECB update failed, the rates in force are kept "
            "(next try at %s UTC): %s",
            f"{retry_at:%Y-%m-%d %H:%M}",
            exc,
        )
    return True


async def run_scheduled_updates(
    engine: Engine, *, url: str, timeout: float, check_seconds: float = CHECK_SECONDS
) -> None:
    """`serve`'s background task: check at start, then every `check_seconds`, forever."""
    while True:
        try:
            await asyncio.to_thread(
                refresh_if_due, engine, now=datetime.now(UTC), url=url, timeout=timeout
            )
        except Exception as exc:  # a database hiccup must not end the schedule
            log.warning("exchange rates: the update check failed: %s", exc)
        await asyncio.sleep(check_seconds)


def _update(
    engine: Engine, *, now: datetime, url: str, timeout: float, retry_at: datetime | None
) -> list[RateRow]:
    try:
        written = rates.update_rates(engine, now=now, url=url, timeout=timeout)
    except ConfigError as exc:  # the caller tells: a log line on schedule, else the person
        failed = {"failed_at": now, "failure": str(exc)[:2000]}
        with engine.begin() as conn:
            conn.execute(
                _row_update().values(
                    **failed, **({"next_attempt_at": retry_at} if retry_at else {})
                )
            )
        raise
    as_of = written[0].as_of if written else None
    log.info("exchange rates: stored %d ECB rates for %s from %s", len(written), as_of, url)
    with engine.begin() as conn:
        conn.execute(
            _row_update().values(
                succeeded_at=now, rates_as_of=as_of, next_attempt_at=now + INTERVAL
            )
        )
    return written


def _row_update() -> Update:
    return update(t.rate_updates).where(t.rate_updates.c.id == _ROW_ID)


def _ensure_row(conn: Connection, now: datetime) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        dialect.insert(t.rate_updates)
        .values(id=_ROW_ID, next_attempt_at=now)
        .on_conflict_do_nothing(index_elements=[t.rate_updates.c.id])
    )
