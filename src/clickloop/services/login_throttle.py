"""The admin login throttle: attempts per client address, counted in the database before the
password is verified, so the limit holds under concurrency and across every server process
and node sharing the database.

Each address has one row: its current window's start and the attempts in it. An attempt is
one atomic upsert (a row lock on PostgreSQL, the write lock on SQLite), so N concurrent tries
see the counts 1..N and only the first `limit` go on to a password check.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case, delete, literal
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from clickloop.storage import tables as t

LIMIT = 10
WINDOW = timedelta(minutes=15)


def count_attempt(
    engine: Engine, address: str, *, now: datetime, limit: int = LIMIT, window: timedelta = WINDOW
) -> timedelta:
    """Count one attempt from `address`; how long it must wait (zero: it may try now).

    The window starts at the first attempt after the previous one ended; once `limit` attempts
    fall in it, the address is refused until it ends. Refused attempts do not extend it.
    """
    table = t.login_attempts
    c = table.c
    cutoff = now - window
    stale = c.window_start <= cutoff
    moment = literal(now, type_=c.window_start.type)
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(table)
        .values(address=address[:64], window_start=now, attempts=1)
        .on_conflict_do_update(
            index_elements=[c.address],
            set_={
                "attempts": case((stale, 1), else_=c.attempts + 1),
                "window_start": case((stale, moment), else_=c.window_start),
            },
        )
        .returning(c.attempts, c.window_start)
    )
    with engine.begin() as conn:
        # Rows of windows that ended are dropped as attempts come, so the table stays small.
        conn.execute(delete(table).where(stale, c.address != address[:64]))
        attempts, started = conn.execute(statement).one()
    if attempts <= limit:
        return timedelta(0)
    wait: timedelta = started + window - now
    return wait


def clear_attempts(engine: Engine, address: str) -> None:
    """A successful login starts its address afresh."""
    with engine.begin() as conn:
        conn.execute(delete(t.login_attempts).where(t.login_attempts.c.address == address[:64]))
