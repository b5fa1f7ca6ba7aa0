"""Set-based reads and writes for a batch of postbacks: a few statements per batch instead of
several per postback (in the single writer thread each statement also costs a GIL hand-over).

Every function works inside the caller's connection and transaction; none commits.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Table, and_, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from clickloop.domain.conversions import ConversionState
from clickloop.storage import tables as t
from clickloop.storage.conversions import (
    CONVERSION_FIELDS,
    LOCKED_CLICK_REFS,
    ClickRef,
    StoredConversion,
    column_processors,
    sqlite_cursor,
    state_values,
    stored_conversion,
)
from clickloop.storage.partitions import WINDOW, by_day, day_window
from clickloop.storage.sqlite_rows import ROWS_PER_STATEMENT, bind_processors, bound, insert_rows

# Keys per IN (...) list: well under SQLite's and PostgreSQL's parameter limits.
_IN_CHUNK = 500
_CLICK_REF_FIELDS = ("subid", "campaign_id", "offer_id", "traffic_source_id")
_CONVERSION_COLUMNS = (
    *CONVERSION_FIELDS,
    *("subid", "tid", "campaign_id", "offer_id", "traffic_source_id", "created_at", "updated_at"),
)
_c = t.conversions.c
# Locked in subid order: batches take their clicks in one global order, so concurrent batches
# on several workers or nodes wait for each other but never deadlock.
_FIND_CLICKS = LOCKED_CLICK_REFS.where(
    t.clicks.c.subid.in_(bindparam("subids", expanding=True))
).order_by(t.clicks.c.subid)
_FIND_CLICKS_IN = _FIND_CLICKS.where(WINDOW)
# Both IN lists together may also match pairs that were not asked for; the wanted pairs filter
# them out. Locked until the transaction ends on PostgreSQL (a no-op on SQLite's single writer).
_FIND_CONVERSIONS = (
    select(_c.id, _c.subid, _c.tid, *(_c[name] for name in CONVERSION_FIELDS))
    .where(
        and_(
            _c.subid.in_(bindparam("subids", expanding=True)),
            _c.tid.in_(bindparam("tids", expanding=True)),
        )
    )
    .with_for_update()
)
_UPDATE_CONVERSION = update(t.conversions).where(_c.id == bindparam("key_id"))
# The log ids come back in the order of the rows given (SQLAlchemy's "insertmanyvalues").
_INSERT_RECEIVED = insert(t.received_postbacks).returning(
    t.received_postbacks.c.id, sort_by_parameter_order=True
)
_INSERT_CONVERSIONS = {
    name: dialect.insert(t.conversions)
    .on_conflict_do_nothing(index_elements=["subid", "tid"])
    .returning(_c.id, _c.subid, _c.tid)
    for name, dialect in (("sqlite", sqlite), ("postgresql", postgresql))
}

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, kw_only=True)
class NewConversion:
    click: ClickRef
    tid: str
    state: ConversionState


def find_clicks(
    conn: Connection, subids: Collection[str], fields: tuple[str, ...] = ()
) -> dict[str, ClickRef]:
    """The clicks among `subids`, by subid, locked in subid order (PostgreSQL), each with the
    click `fields` asked for (the report cubes' ones: read with the rest, not again)."""
    if conn.dialect.name != "sqlite":
        return _find_partitioned_clicks(conn, subids, fields)
    found: dict[str, ClickRef] = {}
    columns = (*_CLICK_REF_FIELDS, *(name for name in fields if name not in _CLICK_REF_FIELDS))
    for chunk in _chunks(sorted(subids)):
        keys = [(subid,) for subid in chunk]
        for values in _sqlite_select(conn, t.clicks, columns, ("subid",), keys):
            found[values["subid"]] = _click_ref(values, fields)
    return found


def _find_partitioned_clicks(
    conn: Connection, subids: Collection[str], fields: tuple[str, ...]
) -> dict[str, ClickRef]:
    """PostgreSQL: each day's ids within that day's partitions, then the ids not found there in
    all of them (ids without a time: storage/partitions.py). Whether a click is found in the
    first pass depends on its id alone, so every batch still locks in one global order."""
    found: dict[str, ClickRef] = {}
    within, anywhere = _find_clicks_sql(fields)
    for day, group in by_day(subids).items():
        if day is None:
            continue
        for chunk in _chunks(group):
            params = {"subids": chunk, **day_window(day).params()}
            for row in conn.execute(within, params):
                found[row.subid] = _click_ref(dict(row._mapping), fields)
    for chunk in _chunks(sorted(set(subids) - found.keys())):
        for row in conn.execute(anywhere, {"subids": chunk}):
            found[row.subid] = _click_ref(dict(row._mapping), fields)
    return found


@functools.cache
def _find_clicks_sql(fields: tuple[str, ...]) -> tuple[Any, Any]:
    """The locking click reads (within a day's window, anywhere) with `fields` too."""
    if not fields:
        return _FIND_CLICKS_IN, _FIND_CLICKS
    extra = [t.clicks.c[name] for name in fields if name not in _CLICK_REF_FIELDS]
    return _FIND_CLICKS_IN.add_columns(*extra), _FIND_CLICKS.add_columns(*extra)


def _click_ref(values: Mapping[str, Any], fields: tuple[str, ...]) -> ClickRef:
    """`values` (all the columns read) are the ClickRef's `fields` too, when fields were asked."""
    return ClickRef(
        subid=values["subid"],
        campaign_id=values["campaign_id"],
        offer_id=values["offer_id"],
        traffic_source_id=values["traffic_source_id"],
        fields=values if fields else {},
    )


def find_conversions(
    conn: Connection, keys: Collection[tuple[str, str]]
) -> dict[tuple[str, str], StoredConversion]:
    """The conversions with the identities (subid, tid) in `keys`, by identity."""
    found: dict[tuple[str, str], StoredConversion] = {}
    wanted = set(keys)
    for chunk in _chunks(sorted(wanted)):
        if conn.dialect.name == "sqlite":
            columns = ("id", "subid", "tid", *CONVERSION_FIELDS)
            rows: Iterator[Mapping[Any, Any]] = iter(
                _sqlite_select(conn, t.conversions, columns, ("subid", "tid"), chunk)
            )
        else:
            subids = sorted({subid for subid, _ in chunk})
            tids = sorted({tid for _, tid in chunk})
            rows = (
                row._mapping
                for row in conn.execute(_FIND_CONVERSIONS, {"subids": subids, "tids": tids})
            )
        for values in rows:
            if (values["subid"], values["tid"]) in wanted:
                found[(values["subid"], values["tid"])] = stored_conversion(values)
    return found


def insert_conversions(
    conn: Connection, rows: Sequence[NewConversion], *, now: datetime
) -> dict[tuple[str, str], int]:
    """Insert new conversions; return the ids by identity. An identity missing from the answer
    was taken meanwhile by a concurrent twin (PostgreSQL with several writers)."""
    if not rows:
        return {}
    values = [
        {
            **state_values(row.state),
            "subid": row.click.subid,
            "tid": row.tid,
            "campaign_id": row.click.campaign_id,
            "offer_id": row.click.offer_id,
            "traffic_source_id": row.click.traffic_source_id,
            "created_at": now,
            "updated_at": now,
        }
        for row in rows
    ]
    if conn.dialect.name == "sqlite":
        ids: dict[tuple[str, str], int] = {}
        inserts = insert_rows(
            conn, t.conversions, _CONVERSION_COLUMNS, values, ignore_conflicts=True
        )
        for chunk, inserted, last in inserts:
            if inserted == len(chunk):  # else a row conflicted: all of the chunk count as taken
                first = last - len(chunk) + 1
                ids.update(((row["subid"], row["tid"]), first + n) for n, row in enumerate(chunk))
        return ids
    statement = _INSERT_CONVERSIONS[conn.dialect.name]
    return {(row.subid, row.tid): row.id for row in conn.execute(statement, values)}


def update_conversions(
    conn: Connection, states: Mapping[int, ConversionState], *, now: datetime
) -> None:
    """Store the new state of each conversion, by id."""
    if not states:
        return
    if conn.dialect.name == "sqlite":
        _sqlite_update(conn, states, now=now)
        return
    conn.execute(
        _UPDATE_CONVERSION,
        [
            {**state_values(state), "updated_at": now, "key_id": conversion_id}
            for conversion_id, state in states.items()
        ],
    )


def insert_received(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert received-postback log rows; return their ids in the same order."""
    if not rows:
        return []
    if conn.dialect.name == "sqlite":
        columns = tuple(rows[0])
        ids: list[int] = []
        for chunk, inserted, last in insert_rows(conn, t.received_postbacks, columns, rows):
            assert inserted == len(chunk)  # no conflict clause: every row is inserted or it raises
            ids.extend(range(last - len(chunk) + 1, last + 1))
        return ids
    statement = _INSERT_RECEIVED
    return [row.id for row in conn.execute(statement, [dict(row) for row in rows])]


def _chunks(items: Sequence[_T]) -> Iterator[list[_T]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield list(items[start : start + _IN_CHUNK])


# --- SQLite: statements on the driver's cursor ----------------------------------------------
# Through SQLAlchemy these statements cost ~half of the writer's time per postback (statement
# set-up, per-row parameter processing, RETURNING rows fetched one step at a time). They go to
# the sqlite3 cursor of the same connection and transaction instead, with SQLAlchemy's own
# type processors, so the stored values are the ones SQLAlchemy would store.


def _sqlite_select(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    key: Sequence[str],
    values: Sequence[Sequence[Any]],
) -> list[dict[str, Any]]:
    """Rows whose `key` columns equal one of `values`, loaded as SQLAlchemy would.

    The keys are a VALUES list that the CROSS JOIN makes SQLite walk first, probing the index
    once per key: `a IN (…) AND b IN (…)` probed every combination (64 x 64 for a batch).
    """
    group = f"({', '.join('?' * len(key))})"
    on = " AND ".join(f"r.{name} = k.column{n}" for n, name in enumerate(key, start=1))
    sql = (
        f"SELECT {', '.join(f'r.{name}' for name in columns)} "
        f"FROM (VALUES {', '.join([group] * len(values))}) AS k "
        f"CROSS JOIN {table.name} AS r ON {on}"
    )
    params = [item for value in values for item in value]
    processors = column_processors(table, conn.dialect)
    # Most columns load as they come: a dict of the row, then the few that need loading.
    loads = [(name, processors[name][1]) for name in columns if processors[name][1] is not None]
    rows = []
    for row in sqlite_cursor(conn).execute(sql, params).fetchall():
        loaded = dict(zip(columns, row, strict=True))
        for name, load in loads:
            value = loaded[name]
            if value is not None:
                loaded[name] = load(value)
        rows.append(loaded)
    return rows


def _sqlite_update(
    conn: Connection, states: Mapping[int, ConversionState], *, now: datetime
) -> None:
    """All the updates in one UPDATE … FROM (VALUES …) statement (one sqlite3 step)."""
    columns = (*CONVERSION_FIELDS, "updated_at")
    binds = bind_processors(t.conversions, columns, conn.dialect)
    group = f"({', '.join('?' * (len(columns) + 1))})"
    assignments = ", ".join(f"{name} = v.column{n}" for n, name in enumerate(columns, start=2))
    cursor = sqlite_cursor(conn)
    items = list(states.items())
    for start in range(0, len(items), ROWS_PER_STATEMENT):
        chunk = items[start : start + ROWS_PER_STATEMENT]
        params: list[Any] = []
        for conversion_id, state in chunk:
            params.append(conversion_id)
            params.extend(bound({**state_values(state), "updated_at": now}, columns, binds))
        values = ", ".join([group] * len(chunk))
        cursor.execute(
            f"UPDATE conversions SET {assignments} "
            f"FROM (VALUES {values}) AS v WHERE conversions.id = v.column1",
            params,
        )
