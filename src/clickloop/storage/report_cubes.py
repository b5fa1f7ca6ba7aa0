"""The report cubes on disk: read units (a click and its conversions), apply fact deltas as
upserts, and rebuild a range from the raw tables (the daily cubes from the hourly ones where the
zone's days are whole UTC hours). The rules are in domain/report_facts.py.

On SQLite the cubes follow the clicks by a durable watermark (`follow`, `catch_up`); on
PostgreSQL the click writer's hook adds each batch's facts (docs/reports.md, "How they stay
exact"). The hot statements go straight to the driver (storage/driver_sql.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import itertools
import os
import time
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, ParamSpec, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    String,
    Table,
    case,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError

from clickloop.domain import report_facts as rf
from clickloop.storage import cube_spans, partitions
from clickloop.storage import tables as t
from clickloop.storage.click_visitors import mark_unique
from clickloop.storage.conversions import column_processors, sqlite_cursor
from clickloop.storage.db import reader_engine
from clickloop.storage.driver_sql import UPSERT_CHUNK, execute, sizes

MARKED_SETTING = "report_marked_dimensions"
# {"timezone": the zone the daily cubes are kept in, "ready": whether they hold every day}
DAILY_SETTING = "report_daily_zone"
_IN_CHUNK = 500  # subids per IN list
MARKED_TTL = 2.0
# How long a rebuild that moves the daily cubes to another zone waits before it recomputes
# them: every process has read the new zone by then (they cache it for MARKED_TTL).
REZONE_WAIT = 2 * MARKED_TTL
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class DailyZone:
    """Where the daily cubes stand: the zone their days are in, and whether they hold every
    day (false from an upgrade or a change of zone until a rebuild fills them); and the hourly
    cubes an upgrade added to a database with clicks, empty until a rebuild fills them."""

    timezone: str
    ready: bool
    unfilled: tuple[str, ...] = ()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def daily_zone_of(value: Any) -> DailyZone:
    """The `report_daily_zone` setting's value as a DailyZone. None (never written: a database
    whose writers always kept them in UTC) is UTC and ready; anything unreadable is not ready."""
    if value is None:
        return DailyZone("UTC", True)
    if not isinstance(value, dict):
        return DailyZone("UTC", False)
    listed = value.get("unfilled", [])
    unfilled = tuple(n for n in listed if n in rf.CUBES) if isinstance(listed, list) else ()
    if not isinstance(value.get("timezone"), str):
        return DailyZone("UTC", False, unfilled)
    try:
        ZoneInfo(value["timezone"])
    except (ZoneInfoNotFoundError, ValueError):
        return DailyZone("UTC", False, unfilled)
    return DailyZone(value["timezone"], value.get("ready") is True, unfilled)


_settings_cache: dict[str, tuple[float, tuple[str, ...], DailyZone]] = {}
# SQLite: each server process folds the clicks past the watermark into the cubes this often
# (seconds), up to FOLLOW_CHUNK of them at a time.
FOLLOW_INTERVAL = 0.5
FOLLOW_CHUNK = 50_000
_lock_files: dict[str, int] = {}  # lock file -> its descriptor (_file_turn)
SEAL_INTERVAL = 60.0
_next_seal: dict[str, float] = {}  # database URL -> when this process next looks at the day
_POSITION_SQL = (
    "SELECT (SELECT position FROM cube_watermarks WHERE name = 'clicks'), "
    "(SELECT coalesce(max(rowid), 0) FROM clicks)"
)
_MOVE_SQL = "UPDATE cube_watermarks SET position = ? WHERE name = 'clicks' AND position = ?"
_REWIND_SQL = (
    "UPDATE cube_watermarks SET position = (SELECT coalesce(max(rowid), 0) FROM clicks) "
    "WHERE name = 'clicks' AND position > (SELECT coalesce(max(rowid), 0) FROM clicks)"
)

_MOVES_PENDING_SQL = "SELECT 1 FROM cube_moves LIMIT 1"
# SQLite: the moves up to an id are summed into the cubes, then deleted (one writer: no move
# up to that id can commit meanwhile).
_MOVES_CHUNK_SQL = "SELECT max(id), count(*) FROM (SELECT id FROM cube_moves ORDER BY id LIMIT ?)"
_MOVED_FACTS_SQL = "SELECT DISTINCT fact FROM cube_moves WHERE id <= ?"
# PostgreSQL: the moves are taken out in one statement (the ones committed by then) into a
# temporary table of the connection's, then summed from there; folds take turns by an
# advisory lock (a table lock of their own would wait for autovacuum, which cube_moves keeps
# busy), taken after `cube_moves` as a rebuild step takes it, then the cubes.
_FOLD_LOCK = 0x636C6D76
_SEAL_LOCK = 0x636C7370  # a session's: one process seals at a time (_seal_turn)
# PostgreSQL: a fold or a rebuild step waits this long for a lock, then gives way (a fold leaves
# the moves to the next one, a rebuild step runs again after a pause): a live writer, which may
# hold some cubes while it waits for another, is then never the one a deadlock aborts.
_GIVE_WAY = "SET LOCAL lock_timeout = '200ms'"
_GAVE_WAY = {"55P03", "40P01"}  # lock_not_available, deadlock_detected
_GIVE_WAY_PAUSES = (0.05, 0.1, 0.2, 0.5, 1, 1, 2, 2, 5, 5, 10)  # seconds before trying again
_PG_TAKE_MOVES = (
    _GIVE_WAY,
    "LOCK TABLE cube_moves IN ROW EXCLUSIVE MODE",
    f"SELECT pg_advisory_xact_lock({_FOLD_LOCK})",
    "CREATE TEMPORARY TABLE IF NOT EXISTS folding_moves (LIKE cube_moves)",
)
_PG_TAKEN_SQL = (
    "WITH taken AS (DELETE FROM cube_moves WHERE id IN "
    "(SELECT id FROM cube_moves ORDER BY id LIMIT %s) RETURNING *) "
    "INSERT INTO folding_moves SELECT * FROM taken"
)
# In the order `apply` upserts (cube names sorted), so that folds and the writes that apply
# units directly (`tracked`) lock shared rows in one order (PostgreSQL).
_EVERY_CUBE = tuple(sorted((*rf.CUBES, *rf.DAILY_CUBES, rf.MARKED, rf.MARKED_SPANS)))

_P = ParamSpec("_P")
_R = TypeVar("_R")
Units = dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]  # subid -> (click, conversions)


def marked_dimensions(conn: Connection) -> tuple[str, ...]:
    """The dimensions the `report_marked_dimensions` setting marks (unknown names skipped)."""
    return _report_settings(conn)[0]


def stored_marked_dimensions(conn: Connection) -> tuple[str, ...]:
    """The `report_marked_dimensions` setting as stored now (no cache: what a report may read
    from `report_marked`, whoever asked for the report)."""
    s = t.settings.c
    return _marked_of(conn.execute(select(s.value).where(s.key == MARKED_SETTING)).scalar())


def _marked_of(value: Any) -> tuple[str, ...]:
    return tuple(n for n in value if n in rf.MARKABLE) if isinstance(value, list) else ()


def daily_zone(conn: Connection) -> DailyZone:
    """The zone the writers keep the daily cubes in (the `report_daily_zone` setting)."""
    return _report_settings(conn)[1]


def stored_daily_zone(conn: Connection) -> DailyZone:
    """The `report_daily_zone` setting as stored now (no cache: a report reads it in its own
    transaction, so it sees the daily cubes and their state from the same moment)."""
    s = t.settings.c
    return daily_zone_of(conn.execute(select(s.value).where(s.key == DAILY_SETTING)).scalar())


def _report_settings(conn: Connection) -> tuple[tuple[str, ...], DailyZone]:
    """The writers' settings, read at most every MARKED_TTL seconds per database: a query per
    click batch cost more than the batch's facts. A change made elsewhere shows within that
    time; `rebuild` after changing the marked dimensions makes the history consistent anyway,
    and a rebuild that moves the daily cubes to another zone waits that long (docs/reports.md)."""
    database = str(conn.engine.url)
    cached = _settings_cache.get(database)
    now = time.monotonic()
    if cached is not None and now - cached[0] < MARKED_TTL:
        return cached[1], cached[2]
    s = t.settings.c
    values = dict(
        conn.execute(select(s.key, s.value).where(s.key.in_([MARKED_SETTING, DAILY_SETTING]))).all()
    )
    names = _marked_of(values.get(MARKED_SETTING))
    zone = daily_zone_of(values.get(DAILY_SETTING))
    _settings_cache[database] = (now, names, zone)
    return names, zone


def forget_marked_dimensions() -> None:
    """Read the settings again at the next write (called when this process changed them)."""
    _settings_cache.clear()


def read_units(conn: Connection, subids: Collection[str], marked: Sequence[str] = ()) -> Units:
    """The clicks of `subids` (those that exist) with their conversions."""
    click_fields = (*rf.CLICK_FIELDS, *marked)
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
        return list(execute(conn, _units_sql(dialect, click_fields, len(subids)), tuple(subids)))
    since = min(w.start for w in windows if w is not None)
    until = max(w.end for w in windows if w is not None)
    sql = _units_sql(dialect, click_fields, len(subids), windowed=True)
    rows = list(execute(conn, sql, (*subids, since, until)))
    missing = sorted(set(subids) - {row[0] for row in rows})
    if missing:
        rows += execute(conn, _units_sql(dialect, click_fields, len(missing)), tuple(missing))
    return rows


def facts_of(units: Units, marked: Sequence[str], zone: ZoneInfo) -> rf.Facts:
    facts: rf.Facts = {}
    for click, conversions in units.values():
        rf.unit_facts(click, conversions, marked, facts, zone=zone)
    return facts


@contextlib.contextmanager
def tracked(conn: Connection, subids: Collection[str]) -> Iterator[None]:
    """Keep the cubes equal to the raw tables across the writes inside: the units of `subids`
    are read before and after, and their difference is applied (not when the block raises).
    On SQLite the cubes first catch up with the clicks (catch_up: a click past the watermark
    must not change)."""
    if subids:
        caught_up(conn)
    marked, days = _report_settings(conn)
    zone = days.zone
    before = facts_of(read_units(conn, subids, marked), marked, zone)
    yield
    after = facts_of(read_units(conn, subids, marked), marked, zone)
    apply(conn, rf.difference(after, before))


def fact_fields(conn: Connection) -> tuple[str, ...]:
    """The click fields add_conversion_changes reads now: rf.FACT_FIELDS, then the marked ones."""
    return (*rf.FACT_FIELDS, *_report_settings(conn)[0])


def add_conversion_changes(
    conn: Connection,
    changes: Sequence[tuple[Mapping[str, Any], rf.Conversion | None, rf.Conversion | None]],
    fields: tuple[str, ...],
) -> None:
    """Add what these conversion changes (the click's `fields`, as fact_fields named them when
    the click was read; before or None; after or None) moved, in units where nothing else
    changed (rf.conversion_moves): cheaper than `tracked`, which reads the units twice and works
    out all their facts. They wait in `cube_moves` for the follower (fold_moves): a row or two
    per change instead of a row in every cube, and no cube row locked by the postback (hot rows
    would make concurrent postbacks take turns on PostgreSQL). Payouts are in millionths
    already (domain/money.py quantizes them)."""
    if not changes:
        return
    marked = fields[len(rf.FACT_FIELDS) :]
    zone = _report_settings(conn)[1].zone
    _add_moves(conn, rf.conversion_moves(changes, marked, zone))


def add_clicks(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """The click writer's hook, before a batch's clicks are inserted: mark each click unique or
    not; on PostgreSQL leave the batch's facts in `cube_moves` for the follower (fold_moves),
    as a postback leaves its conversions': a row per alike clicks instead of ~50 upserted cube
    rows per click, and no cube row locked by the batch (SQLite's follow the clicks by a
    watermark: pending_fold)."""
    if table is not t.clicks:
        return
    mark_unique(conn, rows)
    if conn.dialect.name != "sqlite":
        marked, days = _report_settings(conn)
        _add_moves(conn, rf.click_moves(rows, marked, days.zone))


def _add_moves(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Leave move rows (rf.MOVE_COLUMNS) in `cube_moves` for the follower."""
    _in_chunks(conn, rows, functools.partial(_moves_sql, conn.dialect.name))


@dataclass(frozen=True, slots=True)
class Fold:
    """The facts of the clicks whose rowids are in (start, end]."""

    start: int
    end: int
    facts: rf.Facts


def pending_fold(conn: Connection, limit: int = FOLLOW_CHUNK) -> Fold | None:
    """SQLite: the facts of up to `limit` clicks past the `cube_watermarks` position, or None
    when the cubes hold every click; a read transaction is enough (fold_in checks that the
    position did not move meanwhile). Commits are serialised and a new click takes the largest
    rowid + 1, so every click committed later has a larger rowid than the position.

    What makes this exact: the clicks past the position are as their batch inserted them. A
    write that changes a click's facts (a postback's cost or sub_id: `tracked`) catches up
    first; a conversion that only moves (`add_conversion_changes`) changes no `clicks` fact;
    a delete of the newest clicks moves the position back (`clicks_deleted`)."""
    if conn.dialect.name != "sqlite":
        return None
    cursor = sqlite_cursor(conn)
    position, last = cursor.execute(_POSITION_SQL).fetchone()
    if last <= position:
        return None
    end = min(last, position + limit)
    marked, days = _report_settings(conn)
    groups = cursor.execute(_follow_sql(marked), (position, end))
    return Fold(position, end, rf.grouped_clicks_facts(groups, marked, days.zone))


def fold_in(conn: Connection, fold: Fold) -> bool:
    """In a write transaction: add the fold's facts to the cubes and move the position past
    it, unless something moved the position since the fold was read (then nothing)."""
    if not sqlite_cursor(conn).execute(_MOVE_SQL, (fold.end, fold.start)).rowcount:
        return False
    apply(conn, fold.facts)
    return True


async def follow(
    engine: Engine, run: Callable[[Callable[[Connection], bool]], Awaitable[bool]]
) -> bool:
    """One step of a server process's click follower (SQLite): read the clicks past the
    position in a thread, outside the writers' lock (the GROUP BY is most of the cost), then
    fold them in through `run` (the click writer's: with its next batch). Whether it folded
    anything."""
    if engine.dialect.name != "sqlite":
        return False
    with _file_turn(engine, "fold") as mine:
        if not mine:
            return False
        fold = await asyncio.to_thread(_read_fold, engine)
        if fold is None:
            return False
        return await run(functools.partial(fold_in, fold=fold))


async def follow_moves(
    engine: Engine, run: Callable[[Callable[[Connection], int]], Awaitable[int]]
) -> bool:
    """One step of a server process's follower of the conversion moves. SQLite: fold them
    through `run` (the postback writer's, which wrote them: with its next batch, where the
    fold waits for no other writer's lock). PostgreSQL: in transactions of their own (in a
    writer's batch the cubes' rows would stay locked until it commits), giving way to the
    writers (`_GIVE_WAY`). Whether it folded anything."""
    if engine.dialect.name != "sqlite":
        try:
            return await asyncio.to_thread(_fold_waiting_moves, engine) > 0
        except DBAPIError as exc:
            if _gave_way(exc):
                return False  # the next step folds them
            raise
    if not await asyncio.to_thread(_moves_waiting, engine):
        return False
    return await run(fold_moves) > 0


@contextlib.contextmanager
def _file_turn(engine: Engine, work: str) -> Iterator[bool]:
    """SQLite: whether this process may do `work` (fold, seal) now: an flock on
    `<database>-<work>.lock` taken without waiting, so that the other server processes skip
    their turn instead of doing the same (the position, the marks keep it exact anyway)."""
    path = engine.url.database
    if not path or path == ":memory:":
        yield True
        return
    name = f"{path}-{work}.lock"
    fd = _lock_files.get(name)
    if fd is None:
        try:
            fd = os.open(name, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:  # no lock file here: work all the same
            yield True
            return
        _lock_files[name] = fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        yield False
        return
    try:
        yield True
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _read_fold(engine: Engine) -> Fold | None:
    with reader_engine(engine).connect() as conn:
        return pending_fold(conn)


def _moves_waiting(engine: Engine) -> bool:
    with reader_engine(engine).connect() as conn:
        return _moves_pending(conn)


def _moves_pending(conn: Connection) -> bool:
    return execute(conn, _MOVES_PENDING_SQL, ()).fetchone() is not None


def _fold_waiting_moves(engine: Engine) -> int:
    """PostgreSQL: fold the waiting conversion moves, a transaction per FOLLOW_CHUNK (only a
    read when none wait: fold_moves looks first); how many. It may give way to a writer
    (DBAPIError, _gave_way)."""
    folded = 0
    while True:
        with engine.begin() as conn:
            count = fold_moves(conn)
        folded += count
        if count < FOLLOW_CHUNK:
            return folded


def fold_moves(conn: Connection, limit: int = FOLLOW_CHUNK) -> int:
    """In a write transaction: add up to `limit` of the oldest conversion moves waiting in
    `cube_moves` to every cube, with one INSERT … SELECT per cube, and delete them; returns
    how many. The moves are deltas, so whenever they land the cubes end equal to the raw
    tables; a rebuild adds them first (`everything_in`)."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        cursor = sqlite_cursor(conn)
        last, count = cursor.execute(_MOVES_CHUNK_SQL, (limit,)).fetchone()
        if not count:
            return 0
        marks = cube_spans.sealed(conn)
        moved = _moved(fact for (fact,) in cursor.execute(_MOVED_FACTS_SQL, (last,)))
        for cube in _EVERY_CUBE:
            spanned = cube in cube_spans.SPANNED
            params = (last, marks[cube]) if spanned else (last,)
            cursor.execute(_fold_moves_sql(dialect, cube, moved), params)
        cursor.execute("DELETE FROM cube_moves WHERE id <= ?", (last,))
        return int(count)
    if not _moves_pending(conn):  # a rebuild step's usual case: nothing to lock or take
        return 0
    for statement in _PG_TAKE_MOVES:
        conn.exec_driver_sql(statement)
    count = conn.exec_driver_sql(_PG_TAKEN_SQL, (limit,)).rowcount
    if count:
        marks = cube_spans.sealed(conn)
        moved = _moved(conn.exec_driver_sql("SELECT DISTINCT fact FROM folding_moves").scalars())
        for cube in _EVERY_CUBE:
            spanned = cube in cube_spans.SPANNED
            statement = _fold_moves_sql(dialect, cube, moved)
            conn.exec_driver_sql(statement, (marks[cube],) if spanned else ())
        conn.exec_driver_sql("DELETE FROM folding_moves")
    return int(count)


def catch_up(conn: Connection, limit: int = FOLLOW_CHUNK) -> int:
    """In a write transaction: fold up to `limit` clicks past the position into the cubes;
    returns how many rowids the position moved (0: nothing to fold, or not SQLite)."""
    fold = pending_fold(conn, limit)
    if fold is None:
        return 0
    fold_in(conn, fold)
    return fold.end - fold.start


def settle(engine: Engine) -> None:
    """Bring the cubes up to every committed click and conversion before a report reads them
    (a plain read when there is nothing to fold)."""
    if engine.dialect.name != "sqlite":
        _giving_way(_fold_waiting_moves)(engine)
        return
    with reader_engine(engine).connect() as conn:
        position, last = sqlite_cursor(conn).execute(_POSITION_SQL).fetchone()
        moves = _moves_pending(conn)
    if last <= position and not moves:
        return
    while True:  # a transaction per chunk: the click writer waits for one at most
        with engine.begin() as conn:
            if catch_up(conn) < FOLLOW_CHUNK and fold_moves(conn) < FOLLOW_CHUNK:
                return


def caught_up(conn: Connection) -> None:
    """catch_up until the cubes hold every click (a rebuild recomputes from all of them)."""
    while catch_up(conn) == FOLLOW_CHUNK:
        pass


def everything_in(conn: Connection) -> None:
    """Before a rebuild step replaces some of the cubes' rows: every click and every conversion
    move in the cubes (a move folded later would count twice). On PostgreSQL the live writers
    wait until the step commits: click batches and postbacks at their moves (one committed
    after the fold but before the step's read of the clicks and conversions would count twice),
    folds and `tracked` writes at the cubes, locked in the order `apply` upserts them
    (`_EVERY_CUBE`); a writer that upserts them twice in a transaction may still hold one the
    step waits for, so the step gives way (`_giving_way`)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(_GIVE_WAY)
        conn.exec_driver_sql("LOCK TABLE cube_moves IN EXCLUSIVE MODE")
        names = ", ".join(t.cube_table(cube).name for cube in _EVERY_CUBE)
        conn.exec_driver_sql(f"LOCK TABLE {names} IN EXCLUSIVE MODE")
    caught_up(conn)
    while fold_moves(conn) == FOLLOW_CHUNK:
        pass


def clicks_deleted(conn: Connection) -> None:
    """After clicks were deleted in a transaction that caught up first: when the newest ones
    went, SQLite hands their rowids out again, so the position goes back to the last left."""
    if conn.dialect.name == "sqlite":
        sqlite_cursor(conn).execute(_REWIND_SQL)


def apply(conn: Connection, facts: rf.Facts) -> None:
    """Add `facts` to the cubes (but the longer spans not sealed yet: cube_spans), each in its
    row's columns (rf.slot): multi-row upserts per cube of power-of-two sizes (`_sizes`) of the
    columns its rows touch, keys sorted so two transactions lock shared rows in the same order
    (PostgreSQL). Nothing to add reads no seal mark: it does not wait for a seal (a postback
    batch that changes no click's fields tracks no unit)."""
    if not facts:
        return
    # cube -> row key -> {rf.VALUES index: what adds to it}
    by_cube: dict[str, dict[tuple[Any, ...], dict[int, int]]] = {}
    micros: dict[Decimal, int] = {}  # a sum lands in many cubes: converted once
    marks = cube_spans.sealed(conn)
    for (cube, key), (n, u, m) in facts.items():
        if not cube_spans.kept(cube, key, marks):
            continue
        amount = micros.get(m)
        if amount is None:
            amount = micros[m] = _micros(m)
        kind, count, unique, money = rf.slot(key[-1])
        rows = by_cube.get(cube)
        if rows is None:
            rows = by_cube[cube] = {}
        row = (*key[:-1], kind)
        values = rows.get(row)
        if values is None:
            values = rows[row] = {}
        values[count] = values.get(count, 0) + n
        values[money] = values.get(money, 0) + amount
        if unique is not None:
            values[unique] = values.get(unique, 0) + u
    dialect = conn.dialect.name
    for cube in sorted(by_cube):
        rows = by_cube[cube]
        columns = tuple(sorted(set().union(*rows.values())))
        chosen = [(*row, *(rows[row].get(i, 0) for i in columns)) for row in sorted(rows)]
        _in_chunks(conn, chosen, functools.partial(_upsert_sql, dialect, cube, columns))


def _in_chunks(
    conn: Connection, rows: Sequence[tuple[Any, ...]], statement: Callable[[int], str]
) -> None:
    """`rows` through `statement(size)`, a multi-row statement per power-of-two chunk
    (driver_sql.sizes): a statement per row would cost a round trip each on PostgreSQL."""
    start = 0
    for size in sizes(len(rows), UPSERT_CHUNK):
        chunk = rows[start : start + size] if start or size < len(rows) else rows
        execute(conn, statement(size), tuple(itertools.chain.from_iterable(chunk)))
        start += size


def rebuild(
    engine: Engine,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
    hourly: bool = True,
) -> int:
    """Recompute the cubes from the raw tables for the hours from `since` to `until` (default:
    the first and the last click or conversion), one hour per transaction, so the server keeps
    writing meanwhile; then the daily cubes, one local day per transaction, in the zone of the
    `timezone` setting, for the same days (every day of the raw tables and the hourly cubes
    when that moves them to another zone or they were not ready), and the spans
    of several days over those days. `hourly=False` recomputes only the daily cubes and the
    spans, unless an hourly cube is unfilled (DailyZone): then every hour is recomputed.
    Returns the number of clicks counted."""
    c, v, h = t.clicks.c, t.conversions.c, t.report_cubes["campaigns"].c
    with engine.connect() as conn:
        clicked = conn.execute(select(func.min(c.created_at), func.max(c.created_at))).one()
        converted = conn.execute(select(func.min(v.converted_at), func.max(v.converted_at))).one()
        kept = conn.execute(select(func.min(h.hour), func.max(h.hour))).one()
    starts = [moment for moment in (clicked[0], converted[0]) if moment is not None]
    ends = [moment for moment in (clicked[1], converted[1]) if moment is not None]
    zone, every_day, unfilled = _daily_target(engine)
    if unfilled:
        hourly, since, until = True, None, None
    hours = range(0)
    if hourly and starts:
        hours = range(rf.hour_of(since or min(starts)), rf.hour_of(until or max(ends)) + 1)
    # The daily cubes span the hourly ones too: they hold the days whose raw clicks were pruned.
    if kept[0] is not None:
        starts.append(datetime.fromtimestamp(kept[0] * 3600, UTC))
        ends.append(datetime.fromtimestamp(kept[1] * 3600, UTC))
    days = range(0)
    if starts:
        first = min(starts) if every_day or since is None else since
        last = max(ends) if every_day or until is None else until
        days = range(rf.day_of(first, zone), rf.day_of(last, zone) + 1)
    # Then the longer spans (of the spanned cubes and the marked fields), from the one-day ones.
    spans = [
        (length, day)
        for length in rf.SPAN_DAYS[1:]
        for day in range(days.start - days.start % length, days.stop, length)
    ]
    clicks = 0
    steps: list[Callable[[], int | None]] = [
        *(functools.partial(_rebuild_hour, engine, hour) for hour in hours),
        *(functools.partial(_rebuild_day, engine, day, zone) for day in days),
        *(functools.partial(_rebuild_span, engine, *span) for span in spans),
    ]
    for done, step in enumerate(steps, start=1):
        clicks += step() or 0  # an hour says how many clicks it counted
        if progress is not None:
            progress(done, len(steps))
    _write_daily_zone(engine, DailyZone(zone.key, True))
    seal(engine)
    return clicks


def seal(engine: Engine) -> int:
    """Seal the spans that ended by today in the daily cubes' zone (cube_spans), a cube and day
    at a time; how many days of cubes that took. Nothing while the daily cubes wait for a
    rebuild (it seals them when done), or while another process seals."""
    with _seal_turn(engine) as mine:
        if not mine:
            return 0
        with reader_engine(engine).connect() as conn:
            days = stored_daily_zone(conn)
            marks = cube_spans.sealed(conn, writing=False)
        if not days.ready:
            return 0
        today = _today(days.zone)
        return sum(
            seal_day(engine, cube, end)
            for cube, mark in sorted(marks.items())
            for end in range(mark + 1, today + 1)
        )


@contextlib.contextmanager
def _seal_turn(engine: Engine) -> Iterator[bool]:
    """Whether this process may seal now: one at a time, so that the others do not replace
    the same chunks again (SQLite: the lock file's flock; PostgreSQL: an advisory lock of a
    session, tried, on a connection held meanwhile)."""
    if engine.dialect.name != "postgresql":
        with _file_turn(engine, "seal") as mine:
            yield mine
        return
    with engine.connect() as conn:
        mine = bool(conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({_SEAL_LOCK})").scalar())
        conn.commit()
        try:
            yield mine
        finally:
            if mine:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_SEAL_LOCK})")
                conn.commit()


def seal_day(engine: Engine, cube: str, end: int) -> bool:
    """cube_spans.seal_day, a transaction per step, each giving way to the live writers on
    PostgreSQL (and tried again)."""
    return cube_spans.seal_day(functools.partial(_in_transaction, engine), cube, end)


def _today(zone: ZoneInfo) -> int:
    """The local day now in `zone` (a test moves it)."""
    return rf.day_of(datetime.now(UTC), zone)


async def follow_days(engine: Engine) -> bool:
    """One step of a server process's follower of the local days: `seal`, at most every
    SEAL_INTERVAL seconds (a day ends once a day; until its spans are sealed, reports read its
    one-day rows). Whether it sealed any."""
    now = time.monotonic()
    key = str(engine.url)
    if now < _next_seal.get(key, 0.0):
        return False
    _next_seal[key] = now + SEAL_INTERVAL
    try:
        return await asyncio.to_thread(seal, engine) > 0
    except DBAPIError as exc:
        if _gave_way(exc):
            _next_seal[key] = now  # the next step tries again
            return False
        raise


def _daily_target(engine: Engine) -> tuple[ZoneInfo, bool, tuple[str, ...]]:
    """The zone the daily cubes are to be in (the `timezone` setting), whether every day
    must be recomputed (when they are in another zone: then, once the writers have all moved
    to the new one, they are emptied first; or not ready), and the unfilled hourly cubes."""
    s = t.settings.c
    with engine.connect() as conn:
        values = dict(
            conn.execute(select(s.key, s.value).where(s.key.in_(["timezone", DAILY_SETTING]))).all()
        )
    wanted = values.get("timezone")
    target = daily_zone_of({"timezone": wanted if isinstance(wanted, str) else "UTC"})
    current = daily_zone_of(values.get(DAILY_SETTING))
    if current == DailyZone(target.timezone, True):
        return target.zone, False, ()
    _write_daily_zone(engine, DailyZone(target.timezone, False, current.unfilled))
    if current.timezone != target.timezone:
        time.sleep(REZONE_WAIT)
    with engine.begin() as conn:
        for table in t.report_daily_aggregates:
            conn.execute(delete(table))
    return target.zone, True, current.unfilled


def _write_daily_zone(engine: Engine, state: DailyZone) -> None:
    value: dict[str, Any] = {"timezone": state.timezone, "ready": state.ready}
    if state.unfilled:
        value["unfilled"] = list(state.unfilled)
    with engine.begin() as conn:
        s = t.settings.c
        if not conn.execute(
            update(t.settings).where(s.key == DAILY_SETTING).values(value=value)
        ).rowcount:
            conn.execute(insert(t.settings).values(key=DAILY_SETTING, value=value))
    forget_marked_dimensions()


def _gave_way(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in _GAVE_WAY


def _giving_way(step: Callable[_P, _R]) -> Callable[_P, _R]:
    """`step` (a transaction of its own) run again after a pause when it gave way to a live
    writer on PostgreSQL, up to ~27 s."""

    @functools.wraps(step)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        for pause in _GIVE_WAY_PAUSES:
            try:
                return step(*args, **kwargs)
            except DBAPIError as exc:
                if not _gave_way(exc):
                    raise
            time.sleep(pause)
        return step(*args, **kwargs)

    return run


# The longest pause after a seal's transaction on SQLite: the busy handler's longest sleep.
SEAL_PAUSE = 0.1


@_giving_way
def _in_transaction(engine: Engine, step: cube_spans.Step) -> Any:
    started = time.monotonic()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(_GIVE_WAY)
        done = step(conn)
    if engine.dialect.name == "sqlite":
        # A writer that waited for this transaction sleeps between tries about as long as it
        # has waited so far (SQLite's busy handler: 1, 2, 5 … 100 ms): the next chunk, begun
        # at once, would take the lock again before it wakes. Pausing as long as this
        # transaction took (at most 100 ms) lets it in: the clicks' p99 while 10 days are
        # sealed at 10M clicks 437-572 -> 150-156 ms (bench/reports seal-live).
        time.sleep(min(time.monotonic() - started, SEAL_PAUSE))
    return done


@_giving_way
def _rebuild_hour(engine: Engine, hour: int) -> int:
    start = datetime.fromtimestamp(hour * 3600, UTC)
    end = start + timedelta(hours=1)
    with engine.begin() as conn:
        everything_in(conn)
        for table in t.report_hourly_aggregates:
            conn.execute(delete(table).where(table.c.hour == hour))
        marked = marked_dimensions(conn)
        units, clicks = _units_between(conn, start, end, marked)
        facts: rf.Facts = {}
        only = range(hour, hour + 1)
        for click, conversions in units.values():
            rf.unit_facts(click, conversions, marked, facts, hours=only)
        apply(conn, facts)
        return clicks


@_giving_way
def _rebuild_day(engine: Engine, day: int, zone: ZoneInfo) -> None:
    """Replace the daily cubes' rows of one local day (of the spanned ones, the one-day span):
    summed from the hourly cubes when its UTC hours are whole hours of it, else from the raw
    tables."""
    midnight = datetime.combine(_EPOCH + timedelta(days=day), datetime.min.time())
    start = midnight.replace(tzinfo=zone).astimezone(UTC)
    end = (midnight + timedelta(days=1)).replace(tzinfo=zone).astimezone(UTC)
    hours = range(int(start.timestamp()) // 3600, -(-int(end.timestamp()) // 3600))
    # Each UTC hour of the day as (local day, hour of day) at its first second: the hourly cubes
    # hold the day when each is a whole local hour of it (every zone but the :30 and :45 ones).
    local = {hour: rf.when(hour * 3600, zone)[1:] for hour in hours}
    whole = all(
        at[0] == day and rf.when(hour * 3600 + 3599, zone)[1:] == at for hour, at in local.items()
    )
    with engine.begin() as conn:
        everything_in(conn)
        for table in t.report_daily_aggregates:
            conn.execute(delete(table).where(*_one_day(table, day)))
        if whole:
            within = (hours.start, hours.stop)
            hours_of_day = {hour: at[1] for hour, at in local.items()}
            for name, table in t.report_daily_cubes.items():
                entities, dimensions = rf.DAILY_CUBES[name]
                source = t.report_cubes[_hourly_source(name)]
                prefix = {"days": 1, "day": day} if "days" in table.c else {"day": day}
                keys: dict[str, Any] = {c: source.c[c] for c in (*entities, *dimensions)}
                if name in rf.DAYPARTED:
                    keys["hour_of_day"] = case(hours_of_day, value=source.c.hour)
                keys["kind"] = source.c.kind
                conn.execute(cube_spans.summed(table, prefix, source, keys, _hours(source, within)))
            hourly, one_day = t.report_marked, {"days": 1, "day": day}
            keys = {"dimension": hourly.c.dimension, "value": hourly.c.value, "kind": hourly.c.kind}
            where = _hours(hourly, within)
            conn.execute(cube_spans.summed(t.report_marked_spans, one_day, hourly, keys, where))
            return
        marked = marked_dimensions(conn)
        units, _ = _units_between(conn, start, end, marked)
        facts: rf.Facts = {}
        only = range(day, day + 1)
        for click, conversions in units.values():
            rf.unit_facts(click, conversions, marked, facts, zone=zone, days=only)
        # Of the spans only the day's own: the longer ones are summed from them (_rebuild_span).
        own: rf.Facts = {
            (cube, key): v
            for (cube, key), v in facts.items()
            if cube not in cube_spans.SPANNED or key[0] == 1
        }
        apply(conn, own)


@functools.cache
def _hourly_source(daily: str) -> str:
    """The hourly cube a daily one is summed from: of those holding its entities and
    dimensions, the one with the fewest entities (the fewest rows: country totals come from
    country by device type, not by campaign, source and offer)."""
    entities, dimensions = rf.DAILY_CUBES[daily]
    holding = [
        (len(held[0]), len(held[1]), name)
        for name, held in rf.CUBES.items()
        if {*entities} <= {*held[0]} and {*dimensions} <= {*held[1]}
    ]
    return min(holding)[2]


def _one_day(table: Table, day: int) -> list[Any]:
    """A daily table's rows of `day` alone (of a spanned one, the one-day span)."""
    return [table.c.day == day, *([table.c.days == 1] if "days" in table.c else [])]


@_giving_way
def _rebuild_span(engine: Engine, length: int, first: int) -> None:
    """Replace the spans of `length` days from `first` by the sums of their halves (the
    shorter spans' steps come first), where they are sealed (those past a cube's mark are
    summed when it reaches them: `seal`)."""
    with engine.begin() as conn:
        everything_in(conn)
        for cube, mark in cube_spans.sealed(conn).items():
            if first + length <= mark:
                cube_spans.replace_spans(conn, cube, length, first)


def _hours(source: Table, hours: tuple[int, int]) -> list[Any]:
    return [source.c.hour >= hours[0], source.c.hour < hours[1]]


def _units_between(
    conn: Connection, start: datetime, end: datetime, marked: Sequence[str]
) -> tuple[Units, int]:
    """The units of the clicks in [start, end) and of the conversions then, and how many
    clicks that is."""
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
    return read_units(conn, clicked | set(converted), marked), len(clicked)


def _micros(amount: Decimal | int) -> int:
    return int((Decimal(amount) * t.MICROS).to_integral_value())


@functools.lru_cache(maxsize=4096)  # cubes x touched columns x chunk sizes
def _upsert_sql(dialect: str, cube: str, columns: tuple[int, ...], rows: int) -> str:
    """The upsert of `rows` rows of `cube`'s key and the rf.VALUES at `columns`, adding to
    those of the keys there."""
    table = t.cube_table(cube)
    keys = [column.name for column in table.primary_key]
    values = [rf.VALUES[i] for i in columns]
    mark = "?" if dialect == "sqlite" else "%s"
    one = "(" + ", ".join([mark] * (len(keys) + len(values))) + ")"
    name = table.name
    return (
        f"INSERT INTO {name} ({', '.join((*keys, *values))}) VALUES {', '.join([one] * rows)} "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {_added(name, values)}"
    )


def _added(table: str, values: Sequence[str]) -> str:
    return ", ".join(f"{v} = {table}.{v} + excluded.{v}" for v in values)


@functools.cache
def _moves_sql(dialect: str, rows: int) -> str:
    """The insert of `rows` moves into `cube_moves`."""
    mark = "?" if dialect == "sqlite" else "%s"
    one = f"({', '.join([mark] * len(rf.MOVE_COLUMNS))})"
    return f"INSERT INTO cube_moves ({', '.join(rf.MOVE_COLUMNS)}) VALUES {', '.join([one] * rows)}"


# Of the facts a fold's moves hold, the clicks' and built-in types' (as named) and, by
# attribution ("ct:" or "vt:"), whether a custom type's: what its statement adds up.
_BUILT_IN_FACTS = ("clicks", *(f"{p}:{k}" for k in rf.BUILT_IN_TYPES for p in rf.ATTRIBUTIONS))
Moved = tuple[tuple[str, ...], tuple[str, ...]]


def _moved(facts: Iterable[str]) -> Moved:
    found = set(facts)
    custom = {fact[:3] for fact in found - set(_BUILT_IN_FACTS)}
    return tuple(f for f in _BUILT_IN_FACTS if f in found), tuple(sorted(custom))


@functools.lru_cache(maxsize=1024)
def _fold_moves_sql(dialect: str, cube: str, moved: Moved) -> str:
    """The waiting moves added to `cube` (rf.conversion_moves, rf.click_moves), each in its
    row's column (rf.slot, `_slots`; `moved`: the facts they hold, `_moved`): a marked
    field's rows to the marked cubes, the others to the rest; to a cube of spans, once per
    length but to no longer span past the writers' mark (a parameter: cube_spans). SQLite
    upserts move by move (a key met twice is updated twice) those up to an id; PostgreSQL,
    which refuses a key twice in one statement, sums the taken ones per key, in `apply`'s
    order."""
    table = t.cube_table(cube)
    name = table.name
    keys = [column.name for column in table.primary_key]
    spanned = "days" in table.c
    start = "day - day % s.days" if dialect == "sqlite" else "day - mod(day, s.days)"
    kind, adds = _slots(moved)
    columns, values = list(adds), list(adds.values())
    # What each key column takes from a move: its own column but for these.
    taken = {"kind": kind, **({"days": "s.days", "day": start} if spanned else {})}
    picks = [taken.get(key, key) for key in keys]
    lengths = " UNION ALL ".join(f"SELECT {days} AS days" for days in rf.SPAN_DAYS)
    spans = f" CROSS JOIN ({lengths}) s" if spanned else ""
    mark = "?" if dialect == "sqlite" else "%s"
    rows = "dimension IS NOT NULL" if cube in (rf.MARKED, rf.MARKED_SPANS) else "dimension IS NULL"
    if spanned:
        rows += f" AND (s.days = 1 OR {start} + s.days <= {mark})"
    if dialect == "sqlite":
        select_moves = (
            f"SELECT {', '.join(picks)}, {', '.join(values)} FROM cube_moves{spans} "
            f"WHERE id <= ? AND {rows}"
        )
    else:
        order = [
            f'({pick}) COLLATE "C"' if isinstance(table.c[key].type, String) else key
            for pick, key in zip(picks, keys, strict=True)
        ]
        named = [f"{pick} AS {key}" for pick, key in zip(picks, keys, strict=True)]
        sums = [f"sum({value})" for value in values]
        select_moves = (
            f"SELECT {', '.join(named)}, {', '.join(sums)} FROM folding_moves{spans} "
            f"WHERE {rows} GROUP BY {', '.join(map(str, range(1, len(keys) + 1)))} "
            f"HAVING {' OR '.join(f'{total} <> 0' for total in sums)} ORDER BY {', '.join(order)}"
        )
    return (
        f"INSERT INTO {name} ({', '.join((*keys, *columns))}) {select_moves} "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {_added(name, columns)}"
    )


def _slots(moved: Moved) -> tuple[str, dict[str, str]]:
    """rf.slot in SQL over a move's `fact`, `n`, `u` and `m`, for the facts `moved`: its row's
    kind, and what it adds to each rf.VALUES column these facts land in (0 but to its own).
    Only the facts a fold holds are tested, a compare or two per move and cube."""
    built_in, custom = moved
    listed = ", ".join(f"'{fact}'" for fact in _BUILT_IN_FACTS)
    kind = f"CASE WHEN fact IN ({listed}) THEN '' ELSE substr(fact, 4) END" if custom else "''"
    adds: dict[int, str] = {}
    tests = [(f"fact = '{fact}'", fact) for fact in built_in]
    tests += [(f"substr(fact, 1, 3) = '{p}' AND fact NOT IN ({listed})", p) for p in custom]
    for when, fact in tests:
        _, count, unique, money = rf.slot(fact)
        for at, measure in ((count, "n"), (unique, "u"), (money, "m")):
            if at is not None:
                adds[at] = f"CASE WHEN {when} THEN {measure} ELSE 0 END"
    return kind, {rf.VALUES[at]: adds[at] for at in sorted(adds)}


@functools.cache
def _follow_sql(marked: tuple[str, ...]) -> str:
    """The clicks of a rowid range summed by minute and by what their facts are keyed by
    (rf.grouped_clicks_facts' rows): zones change their offsets on whole minutes."""
    fields = ", ".join((*rf.SIGNATURE_FIELDS, *marked))
    return (
        f"SELECT substr(created_at, 1, 16) AS minute, {fields}, count(*), "
        "coalesce(sum(is_unique), 0), coalesce(sum(cost), 0) FROM clicks "
        f"WHERE rowid > ? AND rowid <= ? GROUP BY minute, {fields}"
    )


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
