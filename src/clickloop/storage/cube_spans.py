"""The report cubes' spans of several days, sealed a day at a time (docs/reports.md, "Spans of
days").

A cube of spans (rf.SPANNED, rf.MARKED_SPANS) holds a fact once per length of rf.SPAN_DAYS. The
writers keep a longer span up to date only once it ends by the cube's **writers' mark**, the
day in its row `kept:<cube>` of `cube_watermarks` (a local day of the daily cubes' zone);
readers read it only once it ends by the **readers' mark**, row `spans:<cube>`. Today's facts,
most of the traffic, land in the one-day spans alone. When a day ends, `seal_day` moves the
writers' mark, replaces the cube's spans that end with the day by the sums of their halves a
chunk of keys per transaction (the writers wait for one chunk, not for the whole cube), then
moves the readers' mark. What a span past the writers' mark holds (facts a rebuild or an older
version left) is read by nothing, and sealing replaces it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Table,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql import FromClause

from clickloop.domain import report_facts as rf
from clickloop.storage import tables as t
from clickloop.storage.driver_sql import execute

SPANNED = frozenset({*rf.SPANNED, rf.MARKED_SPANS})  # the cubes of spans of days
_WRITERS = "kept:"
_READERS = "spans:"
# Keys of a span's first half summed per transaction (each key a row of all its facts): up to
# ~175 ms of SQLite's write lock at 10M clicks a month (10,000: 420-510 ms; docs/reports.md,
# "Sealed a day at a time").
SEAL_CHUNK = 4_000


def mark_name(cube: str, *, writing: bool = False) -> str:
    """The row of `cube_watermarks` that holds `cube`'s readers' (or writers') mark."""
    return (_WRITERS if writing else _READERS) + cube


def sealed(conn: Connection, *, writing: bool = True) -> dict[str, int]:
    """Each cube of spans' writers' mark (or, not `writing`, readers' mark). A writer of the
    cubes reads them before it writes and, on PostgreSQL, holds them (FOR SHARE) until it
    commits: a seal's transaction waits for the writers that read a mark before it, and those
    after it read the mark it moved."""
    prefix = _WRITERS if writing else _READERS
    rows = execute(conn, _marks_sql(prefix, conn.dialect.name), ()).fetchall()
    return {name.removeprefix(prefix): int(position) for name, position in rows}


@functools.cache
def _marks_sql(prefix: str, dialect: str) -> str:
    share = " FOR SHARE" if prefix == _WRITERS and dialect == "postgresql" else ""
    return (
        "SELECT name, position FROM cube_watermarks "
        f"WHERE substr(name, 1, {len(prefix)}) = '{prefix}'{share}"
    )


def move_marks(conn: Connection, day: int, cubes: Sequence[str] = tuple(SPANNED)) -> None:
    """Set both marks of `cubes` to `day` (tests and bench/reports start from such states)."""
    _move(conn, [mark_name(cube, writing=w) for cube in cubes for w in (False, True)], day)


def kept(cube: str, key: tuple[Any, ...], marks: Mapping[str, int]) -> bool:
    """Whether a writer adds to this row of a cube (a key of rf.Facts): all but the longer
    spans that end after their cube's writers' mark."""
    return cube not in SPANNED or key[0] == 1 or key[0] + key[1] <= marks[cube]


Step = Callable[[Connection], Any]


def seal_day(run: Callable[[Step], Any], cube: str, end: int) -> bool:
    """Seal `cube`'s spans that end with `end` (first day + length), when both its marks are
    `end` - 1, or when a seal of it stopped half-way (writers' mark `end`, readers' `end` - 1):
    `run(step)` runs `step(conn)` in a write transaction of its own. First the writers' mark
    moves to `end` (from then on they keep those spans too); then, a chunk of SEAL_CHUNK keys
    per transaction, the spans are replaced by the sums of their halves, shortest first (the
    halves of the chunk's keys are summed already); the last chunk moves the readers' mark. A
    crash between leaves the writers' mark ahead: the next seal replaces every chunk again (a
    seal of the same day in another process at the same time would too: report_cubes.seal
    lets one process seal at a time). Whether it sealed the day (False: another did)."""
    lengths = [n for n in rf.SPAN_DAYS[1:] if end % n == 0]
    table = t.cube_table(cube)
    keys = [c for c in table.primary_key if c.name not in ("days", "day")]
    longest = max(lengths, default=0)
    first_half = [table.c.days == longest // 2, table.c.day == end - longest]

    def begin(conn: Connection) -> bool:
        found = _lock(conn, cube)
        if found == (end - 1, end - 1):
            _move(conn, [mark_name(cube, writing=True)], end)
            return True
        return found == (end, end - 1)

    def chunk(after: tuple[Any, ...] | None) -> Step:
        def step(conn: Connection) -> tuple[Any, ...] | bool:
            if _lock(conn, cube) != (end, end - 1):
                return False
            within = [] if after is None else [tuple_(*keys) > tuple_(*after)]
            last = None
            if lengths:
                bound = select(*keys).where(*first_half, *within).order_by(*keys)
                last = conn.execute(bound.offset(SEAL_CHUNK - 1).limit(1)).first()
            upto = None if last is None else tuple(last)
            for length in lengths:
                replace_spans(conn, cube, length, end - length, after, upto)
            if last is None:
                _move(conn, [mark_name(cube)], end)
                return True
            return tuple(last)

        return step

    if not run(begin):
        return False
    after = None
    while True:
        done = run(chunk(after))
        if isinstance(done, bool):
            return done
        after = done


def _lock(conn: Connection, cube: str) -> tuple[int, int]:
    """`cube`'s writers' and readers' marks, locked on PostgreSQL against the writers (they
    hold the writers' marks FOR SHARE) until the transaction ends."""
    names = (mark_name(cube, writing=True), mark_name(cube))
    marks = t.cube_watermarks.c
    rows = select(marks.name, marks.position).where(marks.name.in_(names)).with_for_update()
    found = dict(conn.execute(rows).all())
    return int(found[names[0]]), int(found[names[1]])


def _move(conn: Connection, names: Sequence[str], day: int) -> None:
    marks = t.cube_watermarks.c
    conn.execute(update(t.cube_watermarks).where(marks.name.in_(names)).values(position=day))


def replace_spans(
    conn: Connection,
    cube: str,
    length: int,
    first: int,
    after: tuple[Any, ...] | None = None,
    upto: tuple[Any, ...] | None = None,
) -> None:
    """Replace `cube`'s spans of `length` days from `first` (of the keys after `after` and up
    to `upto`, past the span's length and day, when given) by the sums of their two halves
    (sealed spans, or the one-day ones): 40% less to read than their days at 10M clicks."""
    delete_sql, insert_sql = _replace_sql(
        conn.dialect.name, cube, after is not None, upto is not None
    )
    bounds = (*(after or ()), *(upto or ()))
    half = length // 2
    execute(conn, delete_sql, (length, first, *bounds))
    halves = (half, first, *bounds, half, first + half, *bounds)
    execute(conn, insert_sql, (length, first, *halves))


@functools.cache
def _replace_sql(dialect: str, cube: str, after: bool, upto: bool) -> tuple[str, str]:
    """replace_spans' DELETE and INSERT … SELECT, as driver SQL: built once per cube, not a
    construct of 40 columns per span and chunk (~6 ms of Python each). A range of keys within
    one (days, day) each: in `IN` of two days, PostgreSQL's index would take the range alone,
    over every day."""
    table = t.cube_table(cube)
    mark = "?" if dialect == "sqlite" else "%s"
    keys = [c.name for c in table.primary_key if c.name not in ("days", "day")]
    row = f"({', '.join(keys)})"
    marks = f"({', '.join([mark] * len(keys))})"
    where = f"days = {mark} AND day = {mark}"
    if after:
        where += f" AND {row} > {marks}"
    if upto:
        where += f" AND {row} <= {marks}"
    name = table.name
    sums = [f"sum({value})" for value in rf.VALUES]
    halves = f"SELECT * FROM {name} WHERE {where} UNION ALL SELECT * FROM {name} WHERE {where}"
    insert = (
        f"INSERT INTO {name} (days, day, {', '.join(keys)}, {', '.join(rf.VALUES)}) "
        f"SELECT CAST({mark} AS INTEGER), CAST({mark} AS INTEGER), {', '.join(keys)}, "
        f"{', '.join(sums)} FROM ({halves}) halves GROUP BY {', '.join(keys)} "
        f"HAVING {' OR '.join(f'{total} <> 0' for total in sums)}"
    )
    return f"DELETE FROM {name} WHERE {where}", insert


def summed(
    table: Table,
    prefix: Mapping[str, int],
    source: FromClause,
    keys: Mapping[str, Any],
    where: Sequence[Any],
) -> Any:
    """INSERT … SELECT into `table` of `prefix` (columns named with their value: a daily cube's
    day, a span's length and first day) and `source`'s facts where `where` holds, summed by
    `keys` (columns named with what of `source` gives them, the row's kind among them)."""
    columns = list(keys.values())
    sums = [func.sum(source.c[column]) for column in rf.VALUES]
    # By position: PostgreSQL matches no key computed with bound values (the hour of day's
    # CASE) to the same expression in the select list.
    positions = range(len(prefix) + 1, len(prefix) + len(columns) + 1)
    query = (
        select(*(literal(value) for value in prefix.values()), *columns, *sums)
        .where(*where)
        .group_by(*(literal_column(str(at)) for at in positions))
        .having(or_(*(total != 0 for total in sums)))
    )
    return insert(table).from_select([*prefix, *keys, *rf.VALUES], query)
