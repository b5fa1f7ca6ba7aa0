"""Daily partitions of `clicks` on PostgreSQL (migration 0005), and the `created_at` window a
click id gives its lookups so that PostgreSQL reads one or two partitions instead of all.

SQLite keeps one table: there the partition functions do nothing and lookups need no window.
A partition `clicks_pYYYYMMDD` holds the clicks of that UTC day; `clicks_default` holds any
click no day partition covers, so a click is never refused for want of one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import and_, bindparam, text
from sqlalchemy.engine import Connection, Engine

from clickloop.domain.clicks import subid_time_ms
from clickloop.storage import tables as t

DAYS_AHEAD = 7
DEFAULT_PARTITION = "clicks_default"
# A click's created_at and its id's time are read from one clock within microseconds; the margin
# covers a clock stepped between the two reads, and is still narrow enough to prune.
SKEW = timedelta(hours=1)
_DAY_NAME = re.compile(r"clicks_p(\d{8})")
_CHILDREN = text(
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = 'clicks'::regclass"
)


# A lookup's condition on created_at, bound with Window.params(): PostgreSQL then reads only the
# partitions the window covers (pruned when the statement starts, so prepared plans prune too).
WINDOW = and_(
    t.clicks.c.created_at >= bindparam("window_start"),
    t.clicks.c.created_at < bindparam("window_end"),
)


@dataclass(frozen=True, slots=True)
class Window:
    """Where a click's created_at lies, from its id."""

    start: datetime
    end: datetime

    def params(self) -> dict[str, datetime]:
        return {"window_start": self.start, "window_end": self.end}


def is_partitioned(bind: Connection | Engine) -> bool:
    """Whether `clicks` is partitioned (PostgreSQL, from migration 0005 on)."""
    return bind.dialect.name == "postgresql"


def subid_window(subid: str) -> Window | None:
    """Where the click `subid` names lies, if its id carries the time it was made."""
    millis = subid_time_ms(subid)
    if millis is None:
        return None
    made = datetime.fromtimestamp(millis / 1000, UTC)
    return Window(made - SKEW, made + SKEW)


def subid_day(subid: str) -> date | None:
    """The UTC day a clickloop click id was made on; None for an id of another making."""
    millis = subid_time_ms(subid)
    return None if millis is None else datetime.fromtimestamp(millis / 1000, UTC).date()


def day_window(day: date) -> Window:
    """The window of every click whose id was made on `day`."""
    start = datetime.combine(day, datetime.min.time(), UTC)
    return Window(start - SKEW, start + timedelta(days=1) + SKEW)


def by_day(subids: Iterable[str]) -> dict[date | None, list[str]]:
    """`subids` sorted and grouped by the day their ids were made (None: ids without a time).

    Sorting by id is sorting by time, so locking group after group keeps one global order."""
    groups: dict[date | None, list[str]] = {}
    for subid in sorted(subids):
        groups.setdefault(subid_day(subid), []).append(subid)
    return groups


def partition_name(day: date) -> str:
    return f"clicks_p{day:%Y%m%d}"


def partition_days(conn: Connection) -> list[date]:
    """The days that have a partition, oldest first (none on SQLite)."""
    if not is_partitioned(conn):
        return []
    days = []
    for (name,) in conn.execute(_CHILDREN):
        match = _DAY_NAME.fullmatch(name)
        if match:
            days.append(datetime.strptime(match[1], "%Y%m%d").date())
    return sorted(days)


def ensure_partitions(conn: Connection, today: date, days_ahead: int = DAYS_AHEAD) -> list[str]:
    """Create the partitions of `today` and the `days_ahead` days after it that are missing;
    return their names."""
    if not is_partitioned(conn):
        return []
    existing = set(partition_days(conn))
    wanted = [today + timedelta(days=n) for n in range(days_ahead + 1)]
    created = []
    for day in wanted:
        if day not in existing:
            create_partition(conn, day)
            created.append(partition_name(day))
    return created


def create_partition(conn: Connection, day: date) -> None:
    """The partition of `day`, made apart and then attached: attaching locks the clicks table
    only against changes of its schema, not against clicks being written. Clicks of that day
    the default partition already holds move in (PostgreSQL refuses the partition otherwise)."""
    name = partition_name(day)
    start, end = f"'{day} 00:00:00+00'", f"'{day + timedelta(days=1)} 00:00:00+00'"
    conn.exec_driver_sql(f"CREATE TABLE {name} (LIKE clicks INCLUDING DEFAULTS)")
    conn.exec_driver_sql(
        f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} "
        f"WHERE created_at >= {start} AND created_at < {end} RETURNING *) "
        f"INSERT INTO {name} SELECT * FROM moved"
    )
    conn.exec_driver_sql(
        f"ALTER TABLE clicks ATTACH PARTITION {name} FOR VALUES FROM ({start}) TO ({end})"
    )


def drop_partition(conn: Connection, day: date) -> None:
    conn.exec_driver_sql(f"DROP TABLE {partition_name(day)}")
