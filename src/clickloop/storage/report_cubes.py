"""The report cubes on disk: read units (a click and its conversions), apply fact deltas as
upserts, and rebuild a range from the raw tables. The rules are in domain/report_facts.py.

The hot statements go to the driver (`_execute`: the sqlite3 cursor, or `exec_driver_sql`): a
postback reads its unit twice and a click batch upserts a few dozen rows, where Core's
per-statement work would cost more than the database's. A click batch's statements come in a
few fixed sizes (`_sizes`): sqlite3 and psycopg keep prepared statements by their text, and a
text per batch size pushed them out of their caches (a new prepare cost more than a run).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import operator
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, delete, func, select, text
from sqlalchemy.engine import Connection, Dialect, Engine

from clickloop.domain import report_facts as rf
from clickloop.storage import partitions
from clickloop.storage import tables as t
from clickloop.storage.conversions import column_processors, sqlite_cursor

MARKED_SETTING = "report_marked_dimensions"
_IN_CHUNK = 500  # subids per IN list
_UPSERT_CHUNK = 256  # rows per multi-row upsert at most (a power of two: `_sizes`)
_EXISTS_CHUNK = 128  # visitors per uniqueness query (SQLite allows 500 compound SELECTs)
UNIQUE_WINDOW = timedelta(hours=24)
MARKED_TTL = 2.0
_CREATED_AT = operator.itemgetter("created_at")
_marked_cache: dict[str, tuple[float, tuple[str, ...]]] = {}

Units = dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]  # subid -> (click, conversions)


def cube_table(name: str) -> Table:
    return t.report_marked if name == rf.MARKED else t.report_cubes[name]


def marked_dimensions(conn: Connection) -> tuple[str, ...]:
    """The dimensions the `report_marked_dimensions` setting marks (unknown names skipped),
    read at most every MARKED_TTL seconds per database: a query per click batch cost more than
    the batch's facts. A change made elsewhere shows within that time; `rebuild` after changing
    the setting makes the history consistent anyway (docs/reports.md)."""
    database = str(conn.engine.url)
    cached = _marked_cache.get(database)
    now = time.monotonic()
    if cached is not None and now - cached[0] < MARKED_TTL:
        return cached[1]
    value = conn.execute(
        select(t.settings.c.value).where(t.settings.c.key == MARKED_SETTING)
    ).scalar()
    names = tuple(n for n in value if n in rf.MARKABLE) if isinstance(value, list) else ()
    _marked_cache[database] = (now, names)
    return names


def forget_marked_dimensions() -> None:
    """Read the setting again at the next write (called when this process changed it)."""
    _marked_cache.clear()


def read_units(conn: Connection, subids: Collection[str], marked: Sequence[str] = ()) -> Units:
    """The clicks of `subids` (those that exist) with their conversions."""
    click_fields = (*rf.CLICK_FIELDS, *(m for m in marked if m not in rf.CLICK_FIELDS))
    loads = _loads(conn.dialect, click_fields)
    units: Units = {}
    subids = sorted(subids)
    for start in range(0, len(subids), _IN_CHUNK):
        chunk = subids[start : start + _IN_CHUNK]
        for row in _unit_rows(conn, click_fields, chunk):
            subid = row[0]
            if subid not in units:
                click = {
                    name: _load(loads, name, row[1 + i]) for i, name in enumerate(click_fields)
                }
                units[subid] = (click, [])
            if row[-1] is not None:  # converted_at: NULL when the click has no conversion
                base = 1 + len(click_fields)
                units[subid][1].append(
                    {
                        name: _load(loads, f"conversion.{name}", row[base + i])
                        for i, name in enumerate(rf.CONVERSION_FIELDS)
                    }
                )
    return units


def _unit_rows(conn: Connection, click_fields: tuple[str, ...], subids: list[str]) -> list[Any]:
    """The rows of these clicks joined to their conversions. On partitioned PostgreSQL the
    clicks are looked for in the days their ids point at first (partitions.subid_window), then,
    for any not found there (an imported id, a skewed clock), everywhere."""
    dialect = conn.dialect.name
    windows = [partitions.subid_window(subid) for subid in subids]
    if dialect != "postgresql" or None in windows or not partitions.is_partitioned(conn):
        return list(_execute(conn, _units_sql(dialect, click_fields, len(subids)), tuple(subids)))
    since = min(w.start for w in windows if w is not None)
    until = max(w.end for w in windows if w is not None)
    sql = _units_sql(dialect, click_fields, len(subids), windowed=True)
    rows = list(_execute(conn, sql, (*subids, since, until)))
    missing = sorted(set(subids) - {row[0] for row in rows})
    if missing:
        rows += _execute(conn, _units_sql(dialect, click_fields, len(missing)), tuple(missing))
    return rows


def facts_of(units: Units, marked: Sequence[str]) -> rf.Facts:
    facts: rf.Facts = {}
    for click, conversions in units.values():
        rf.unit_facts(click, conversions, marked, facts)
    return facts


@contextlib.contextmanager
def tracked(conn: Connection, subids: Collection[str]) -> Iterator[None]:
    """Keep the cubes equal to the raw tables across the writes inside: the units of `subids`
    are read before and after, and their difference is applied (not when the block raises)."""
    marked = marked_dimensions(conn)
    before = facts_of(read_units(conn, subids, marked), marked)
    yield
    after = facts_of(read_units(conn, subids, marked), marked)
    apply(conn, rf.difference(after, before))


def add_clicks(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """The click writer's hook, before a batch's clicks are inserted: mark each click unique or
    not, and add the batch's facts to the cubes."""
    if table is not t.clicks:
        return
    _mark_unique(conn, rows)
    apply(conn, rf.new_clicks_facts(rows, marked_dimensions(conn)))


def _mark_unique(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """A click is unique when its visitor did not click its campaign in the 24 hours before
    (a batch's own clicks in time order; clicks committed by other processes at the same
    moment are not seen, so a visitor's first clicks there may both count)."""
    ordered = sorted(rows, key=_CREATED_AT)
    keys = [(row["campaign_id"], row.get("visitor")) for row in ordered]
    pairs = list({key for key in keys if key[1]})
    since = ordered[0]["created_at"] - UNIQUE_WINDOW
    seen: set[tuple[Any, Any]] = set()
    bind = column_processors(t.clicks, conn.dialect)["created_at"][0]
    bound_since = bind(since) if bind is not None else since
    for start in range(0, len(pairs), _EXISTS_CHUNK):
        chunk = pairs[start : start + _EXISTS_CHUNK]
        # Padded with its last pair to a power of two: a few statement texts for all batches.
        chunk += chunk[-1:] * (_padded(len(chunk)) - len(chunk))
        sql = _seen_sql(conn.dialect.name, len(chunk))
        params = tuple(v for pair in chunk for v in (*pair, bound_since))
        seen.update(chunk[int(index)] for (index,) in _execute(conn, sql, params))
    for row, key in zip(ordered, keys, strict=True):
        if key in seen:
            row["is_unique"] = False
        else:
            row["is_unique"] = True
            if key[1]:
                seen.add(key)


def apply(conn: Connection, facts: rf.Facts) -> None:
    """Add `facts` to the cubes: multi-row upserts per cube of power-of-two sizes (`_sizes`),
    keys sorted so two transactions lock shared rows in the same order (PostgreSQL)."""
    by_cube: dict[str, list[tuple[Any, ...]]] = {}
    for (cube, key), (n, u, m) in facts.items():
        by_cube.setdefault(cube, []).append((*key, n, u, _micros(m)))
    dialect = conn.dialect.name
    for cube in sorted(by_cube):
        rows = sorted(by_cube[cube])
        table = cube_table(cube)
        start = 0
        for size in _sizes(len(rows), _UPSERT_CHUNK):
            sql = _upsert_sql(dialect, table.name, _columns(table), size)
            _execute(conn, sql, tuple(itertools.chain.from_iterable(rows[start : start + size])))
            start += size


def rebuild(
    engine: Engine,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Recompute the cubes from the raw tables for the hours from `since` to `until` (default:
    the first and the last click or conversion), one hour per transaction, so the server keeps
    writing meanwhile; returns the number of clicks counted."""
    c, v = t.clicks.c, t.conversions.c
    with engine.connect() as conn:
        clicked = conn.execute(select(func.min(c.created_at), func.max(c.created_at))).one()
        converted = conn.execute(select(func.min(v.converted_at), func.max(v.converted_at))).one()
    starts = [moment for moment in (clicked[0], converted[0]) if moment is not None]
    ends = [moment for moment in (clicked[1], converted[1]) if moment is not None]
    if not starts:
        return 0
    since = since or min(starts)
    end = until or max(ends)
    first_hour, last_hour = rf.hour_of(since), rf.hour_of(end)
    total = last_hour - first_hour + 1
    clicks = 0
    for done, hour in enumerate(range(first_hour, last_hour + 1), start=1):
        clicks += _rebuild_hour(engine, hour)
        if progress is not None:
            progress(done, total)
    return clicks


def _rebuild_hour(engine: Engine, hour: int) -> int:
    start = datetime.fromtimestamp(hour * 3600, UTC)
    end = start + timedelta(hours=1)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Live writers' upserts wait while the hour is replaced (see docs/reports.md).
            names = ", ".join(table.name for table in _all_tables())
            conn.execute(text(f"LOCK TABLE {names} IN EXCLUSIVE MODE"))
        for table in _all_tables():  # on SQLite this write takes the lock before the reads
            conn.execute(delete(table).where(table.c.hour == hour))
        marked = marked_dimensions(conn)
        # By campaign: the (campaign, time) index serves this; a time index of its own would
        # cost every click insert more than rebuilds are worth.
        campaigns = select(t.campaigns.c.id).scalar_subquery()
        clicked = set(
            conn.execute(
                select(t.clicks.c.subid).where(
                    t.clicks.c.campaign_id.in_(campaigns),
                    t.clicks.c.created_at >= start,
                    t.clicks.c.created_at < end,
                )
            ).scalars()
        )
        converted = conn.execute(
            select(t.conversions.c.subid)
            .where(t.conversions.c.converted_at >= start, t.conversions.c.converted_at < end)
            .distinct()
        ).scalars()
        subids = clicked | set(converted)
        facts: rf.Facts = {}
        only = range(hour, hour + 1)
        for click, conversions in read_units(conn, subids, marked).values():
            rf.unit_facts(click, conversions, marked, facts, hours=only)
        apply(conn, facts)
        return len(clicked)


def _execute(conn: Connection, sql: str, params: tuple[Any, ...]) -> Any:
    """On SQLite straight on the driver's cursor of the same transaction (SQLAlchemy's
    per-statement work was a third of a click batch's cube upkeep)."""
    if conn.dialect.name == "sqlite":
        return sqlite_cursor(conn).execute(sql, params)
    return conn.exec_driver_sql(sql, params)


def _all_tables() -> list[Table]:
    return [*t.report_cubes.values(), t.report_marked]


@functools.cache
def _columns(table: Table) -> tuple[str, ...]:
    return tuple(column.name for column in table.columns)


def _sizes(count: int, most: int) -> list[int]:
    """`count` as a sum of powers of two up to `most` (a power of two), largest first: 37 is
    32 + 4 + 1. A multi-row upsert cannot be padded (PostgreSQL refuses a key twice)."""
    sizes = [most] * (count // most)
    rest = count % most
    while rest:
        size = 1 << (rest.bit_length() - 1)
        sizes.append(size)
        rest -= size
    return sizes


def _padded(count: int) -> int:
    """The power of two at or above `count`."""
    return 1 << (count - 1).bit_length()


def _micros(amount: Decimal | int) -> int:
    return int((Decimal(amount) * t.MICROS).to_integral_value())


@functools.cache
def _upsert_sql(dialect: str, table: str, columns: tuple[str, ...], rows: int) -> str:
    mark = "?" if dialect == "sqlite" else "%s"
    one = "(" + ", ".join([mark] * len(columns)) + ")"
    key = ", ".join(columns[:-3])
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([one] * rows)} "
        f"ON CONFLICT ({key}) DO UPDATE SET n = {table}.n + excluded.n, "
        f"u = {table}.u + excluded.u, m = {table}.m + excluded.m"
    )


@functools.cache
def _seen_sql(dialect: str, count: int) -> str:
    """Which of `count` (campaign, visitor, since) triples clicked: one index probe each."""
    mark = "?" if dialect == "sqlite" else "%s"
    one = (
        "SELECT {i} WHERE EXISTS (SELECT 1 FROM clicks WHERE campaign_id = {m} "
        "AND visitor = {m} AND created_at >= {m})"
    )
    return " UNION ALL ".join(one.format(i=i, m=mark) for i in range(count))


@functools.cache
def _units_sql(
    dialect: str, click_fields: tuple[str, ...], count: int, *, windowed: bool = False
) -> str:
    mark = "?" if dialect == "sqlite" else "%s"
    clicks = ", ".join(f"c.{name}" for name in click_fields)
    conversions = ", ".join(f"v.{name}" for name in rf.CONVERSION_FIELDS)
    window = f" AND c.created_at >= {mark} AND c.created_at < {mark}" if windowed else ""
    return (
        f"SELECT c.subid, {clicks}, {conversions} FROM clicks c "
        f"LEFT JOIN conversions v ON v.subid = c.subid "
        f"WHERE c.subid IN ({', '.join([mark] * count)}){window}"
    )


@functools.cache
def _loads(dialect: Dialect, click_fields: tuple[str, ...]) -> dict[str, Any]:
    clicks = column_processors(t.clicks, dialect)
    conversions = column_processors(t.conversions, dialect)
    loads = {name: clicks[name][1] for name in click_fields}
    loads.update({f"conversion.{name}": conversions[name][1] for name in rf.CONVERSION_FIELDS})
    return loads


def _load(loads: dict[str, Any], name: str, value: Any) -> Any:
    load = loads[name]
    return load(value) if load is not None and value is not None else value
