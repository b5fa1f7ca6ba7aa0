"""Multi-row INSERTs on the sqlite3 cursor of a SQLAlchemy connection, for the writer's hot paths.

One statement is one sqlite3 step, where `executemany` or RETURNING take one step (and one GIL
hand-over to the event loop) per row. Values go through SQLAlchemy's own bind processors, so
what is stored is what SQLAlchemy would store.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Connection, Dialect

from clickloop.storage.conversions import column_processors, sqlite_cursor

# Rows per statement: well under SQLite's default SQLITE_MAX_VARIABLE_NUMBER (32766 since 3.32).
ROWS_PER_STATEMENT = 500


def insert_rows(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: Sequence[Mapping[str, Any]],
    *,
    ignore_conflicts: bool = False,
) -> Iterator[tuple[Sequence[Mapping[str, Any]], int, int]]:
    """Insert `rows`; yield each chunk with how many of its rows were inserted and the last
    rowid. When all were, their ids are the `len(chunk)` ids up to the last: SQLite gives a new
    row the table's largest rowid + 1, so the rows of one statement get consecutive ids."""
    binds = bind_processors(table, columns, conn.dialect)
    group = f"({', '.join('?' * len(columns))})"
    head = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES "
    suffix = " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
    cursor = sqlite_cursor(conn)
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        params: list[Any] = []
        for row in chunk:
            params.extend(bound(row, columns, binds))
        cursor.execute(head + ", ".join([group] * len(chunk)) + suffix, params)
        yield chunk, int(cursor.rowcount), int(cursor.lastrowid or 0)


def bound(
    row: Mapping[str, Any], columns: Sequence[str], binds: Sequence[Callable[[Any], Any] | None]
) -> list[Any]:
    values = [row[name] for name in columns]
    for index, bind in enumerate(binds):
        if bind is not None and values[index] is not None:
            values[index] = bind(values[index])
    return values


@functools.cache
def bind_processors(
    table: Table, columns: tuple[str, ...], dialect: Dialect
) -> tuple[Callable[[Any], Any] | None, ...]:
    """Each column's bind processor; for UTC datetimes a cheaper one (~0.5 µs instead of ~4)
    that gives the same text, checked here on probe values."""
    processors = column_processors(table, dialect)
    return tuple(_faster(processors[name][0]) for name in columns)


def _faster(bind: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    if bind is None:
        return None
    zones = (UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-7)))
    moments = (datetime(2026, 11, 22, 9, 30, 15, 123456), datetime(2026, 1, 2, 3, 4, 5))
    probes = [moment.replace(tzinfo=zone) for moment in moments for zone in zones]
    try:
        if all(_utc_text(probe) == bind(probe) for probe in probes):
            return _utc_text
    except (TypeError, ValueError, AttributeError, ArithmeticError):
        pass  # not a datetime column
    return bind


def _utc_text(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
