"""Repositories for conversions, the received-postback log, exchange rates and conversion types.

Every function works inside the caller's connection and transaction; none commits.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import OperationalError

from clickloop.domain.conversions import ConversionState
from clickloop.domain.money import format_rate
from clickloop.storage import tables as t
from clickloop.storage.partitions import WINDOW, subid_window
from clickloop.storage.sqlite_driver import sqlite3

CONVERSION_FIELDS = (
    "type",
    "original_status",
    "payout",
    "currency",
    "original_payout",
    "original_currency",
    "rate",
    "cost",
    "converted_at",
    "params",
)
# Built once: constructing statements per call cost more than executing them on the hot path.
# What a conversion needs of its click, locked until the transaction ends (PostgreSQL): every
# writer that changes a click's conversions holds its click first (see conversion_batches).
# NO KEY UPDATE: inserting a conversion or a log row (KEY SHARE, for the foreign key) still may.
LOCKED_CLICK_REFS = select(
    t.clicks.c.subid, t.clicks.c.campaign_id, t.clicks.c.offer_id, t.clicks.c.traffic_source_id
).with_for_update(key_share=True)
_FIND_CLICK = LOCKED_CLICK_REFS.where(t.clicks.c.subid == bindparam("key_subid"))
_FIND_CLICK_IN = _FIND_CLICK.where(WINDOW)
_FIND_CONVERSION = (
    select(t.conversions.c.id, *(t.conversions.c[name] for name in CONVERSION_FIELDS))
    .where(
        and_(
            t.conversions.c.subid == bindparam("key_subid"),
            t.conversions.c.tid == bindparam("key_tid"),
        )
    )
    .with_for_update()
)
_CLICK_REF_FIELDS = ("subid", "campaign_id", "offer_id", "traffic_source_id")
_ON_IDENTITY_CONFLICT = "ON CONFLICT (subid, tid) DO NOTHING"
_UPDATE_CONVERSION = update(t.conversions).where(t.conversions.c.id == bindparam("key_id"))
_INSERT_RECEIVED = insert(t.received_postbacks).returning(t.received_postbacks.c.id)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClickRef:
    """The parts of a click a postback needs; `fields`: all the columns read, when a batch asked
    for more by name (find_clicks)."""

    subid: str
    campaign_id: int
    offer_id: int | None
    traffic_source_id: int | None
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredConversion:
    id: int
    state: ConversionState


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedPostback:
    """One row of the received-postback log."""

    id: int
    received_at: datetime
    method: str
    remote_ip: str | None
    query: str
    body: str
    content_type: str | None
    headers: dict[str, str]
    subid: str | None
    outcome: str
    reason: str
    conversion_id: int | None
    reprocessed_by: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RateRow:
    currency: str
    per_eur: Decimal
    source: str  # ecb | manual
    as_of: str
    updated_at: datetime


# --- clicks and conversions ---------------------------------------------------------------


def find_click(conn: Connection, subid: str) -> ClickRef | None:
    """The click, locked until the transaction ends (PostgreSQL): see conversion_batches."""
    if conn.dialect.name == "sqlite":
        values = _sqlite_select_one(conn, t.clicks, _CLICK_REF_FIELDS, {"subid": subid})
    else:
        # Within the partitions the id's time points at, else in all (storage/partitions.py).
        window = subid_window(subid)
        found = None
        if window is not None:
            found = conn.execute(_FIND_CLICK_IN, {"key_subid": subid, **window.params()}).first()
        if found is None:
            found = conn.execute(_FIND_CLICK, {"key_subid": subid}).first()
        values = dict(found._mapping) if found is not None else None
    return ClickRef(**values) if values is not None else None


def overwrite_click_fields(
    conn: Connection, subid: str, fields: Mapping[str, str], cost: Decimal | None
) -> None:
    """Replace click values with those a postback sent (Keitaro does the same)."""
    values: dict[str, Any] = {name: value for name, value in fields.items() if name in t.clicks.c}
    if cost is not None:
        values["cost"] = cost
    if values:
        conn.execute(update(t.clicks).where(t.clicks.c.subid == subid).values(**values))


def find_conversion(conn: Connection, subid: str, tid: str) -> StoredConversion | None:
    """The conversion with this identity, locked until the transaction ends (PostgreSQL)."""
    if conn.dialect.name == "sqlite":
        # One writer holds SQLite's lock for the whole transaction: no row lock is needed.
        key = {"subid": subid, "tid": tid}
        values = _sqlite_select_one(conn, t.conversions, ("id", *CONVERSION_FIELDS), key)
    else:
        found = conn.execute(_FIND_CONVERSION, {"key_subid": subid, "key_tid": tid}).first()
        values = dict(found._mapping) if found is not None else None
    return stored_conversion(values) if values is not None else None


def stored_conversion(values: Mapping[Any, Any]) -> StoredConversion:
    """A conversion from its `id` and CONVERSION_FIELDS columns, as SQLAlchemy loads them."""
    return StoredConversion(
        id=values["id"],
        state=ConversionState(
            **{name: values[name] for name in CONVERSION_FIELDS if name not in ("rate", "params")},
            rate=Decimal(values["rate"]),
            params=dict(values["params"] or {}),
        ),
    )


def has_sale(conn: Connection, subid: str, types: Sequence[str]) -> bool:
    """Whether any conversion of the click has one of `types`."""
    c = t.conversions.c
    found = conn.execute(
        select(c.id).where(and_(c.subid == subid, c.type.in_(list(types)))).limit(1)
    ).first()
    return found is not None


def insert_conversion(
    conn: Connection, *, click: ClickRef, tid: str, state: ConversionState, now: datetime
) -> int | None:
    """Insert a new conversion; None when (subid, tid) was taken meanwhile (a concurrent twin).

    The conflict is left to the UNIQUE(subid, tid) constraint: on PostgreSQL the statement waits
    for the other transaction and then does nothing, so the caller reads the winner's row.
    """
    values = {
        **state_values(state),
        "subid": click.subid,
        "tid": tid,
        "campaign_id": click.campaign_id,
        "offer_id": click.offer_id,
        "traffic_source_id": click.traffic_source_id,
        "created_at": now,
        "updated_at": now,
    }
    if conn.dialect.name == "sqlite":
        return _sqlite_insert(conn, t.conversions, values, _ON_IDENTITY_CONFLICT)
    return conn.execute(_insert_conversion_statement(conn.dialect.name), values).scalar()


@functools.cache
def _insert_conversion_statement(dialect_name: str) -> Any:
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    return (
        dialect.insert(t.conversions)
        .on_conflict_do_nothing(index_elements=["subid", "tid"])
        .returning(t.conversions.c.id)
    )


def update_conversion(
    conn: Connection, conversion_id: int, state: ConversionState, now: datetime
) -> None:
    values = {**state_values(state), "updated_at": now}
    if conn.dialect.name == "sqlite":
        _sqlite_update(conn, t.conversions, values, {"id": conversion_id})
        return
    conn.execute(_UPDATE_CONVERSION, {**values, "key_id": conversion_id})


def state_values(state: ConversionState) -> dict[str, Any]:
    values = {name: getattr(state, name) for name in CONVERSION_FIELDS}
    values["rate"] = format_rate(state.rate)
    values["params"] = dict(state.params)
    return values


def count_conversions(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(t.conversions)).scalar() or 0)


# --- the received-postback log ------------------------------------------------------------


def insert_received(conn: Connection, values: Mapping[str, Any]) -> int:
    if conn.dialect.name == "sqlite":
        log_id = _sqlite_insert(conn, t.received_postbacks, values)
        assert log_id is not None
        return log_id
    return int(conn.execute(_INSERT_RECEIVED, dict(values)).scalar_one())


def get_received(conn: Connection, log_id: int) -> ReceivedPostback | None:
    row = conn.execute(
        select(t.received_postbacks).where(t.received_postbacks.c.id == log_id)
    ).first()
    if row is None:
        return None
    values = dict(row._mapping)
    values["headers"] = dict(values["headers"] or {})
    return ReceivedPostback(**values)


def list_unreprocessed_ignored(
    conn: Connection, *conditions: ColumnElement[bool], limit: int = 100000
) -> list[int]:
    """Ids of ignored log rows that were not re-processed yet (and meet `conditions`), oldest
    first."""
    c = t.received_postbacks.c
    rows = conn.execute(
        select(c.id)
        .where(c.outcome == "ignored", c.reprocessed_by.is_(None), *conditions)
        .order_by(c.id)
        .limit(limit)
    )
    return [int(row.id) for row in rows]


def count_unreprocessed_ignored(
    conn: Connection, *conditions: ColumnElement[bool]
) -> tuple[int, int | None]:
    """How many ignored log rows not re-processed yet meet `conditions`, and the newest one's id."""
    c = t.received_postbacks.c
    count, newest = conn.execute(
        select(func.count(), func.max(c.id)).where(
            c.outcome == "ignored", c.reprocessed_by.is_(None), *conditions
        )
    ).one()
    return int(count), None if newest is None else int(newest)


def mark_reprocessed(conn: Connection, log_id: int, by_id: int) -> None:
    c = t.received_postbacks.c
    conn.execute(update(t.received_postbacks).where(c.id == log_id).values(reprocessed_by=by_id))


# --- exchange rates -----------------------------------------------------------------------


def read_rates(conn: Connection) -> list[RateRow]:
    rows = conn.execute(select(t.exchange_rates).order_by(t.exchange_rates.c.currency))
    return [
        RateRow(
            currency=row.currency,
            per_eur=Decimal(row.per_eur),
            source=row.source,
            as_of=row.as_of,
            updated_at=row.updated_at,
        )
        for row in rows
    ]


def upsert_rate(conn: Connection, row: RateRow) -> None:
    values = {
        "per_eur": format_rate(row.per_eur),
        "source": row.source,
        "as_of": row.as_of,
        "updated_at": row.updated_at,
    }
    c = t.exchange_rates.c
    changed = conn.execute(
        update(t.exchange_rates).where(c.currency == row.currency).values(**values)
    )
    if changed.rowcount == 0:
        conn.execute(insert(t.exchange_rates).values(currency=row.currency, **values))


# --- conversion types ---------------------------------------------------------------------


def read_conversion_types(conn: Connection) -> list[tuple[str, str]]:
    """Custom conversion types as (name, label), by name."""
    c = t.conversion_types.c
    return [(row.name, row.label) for row in conn.execute(select(c.name, c.label).order_by(c.name))]


def insert_conversion_type(conn: Connection, *, name: str, label: str, now: datetime) -> bool:
    """Add a custom type; False when the name exists already."""
    c = t.conversion_types.c
    if conn.execute(select(c.name).where(c.name == name)).first() is not None:
        return False
    conn.execute(insert(t.conversion_types).values(name=name, label=label, created_at=now))
    return True


# Errors that mean the database cannot work now (as opposed to a defect in one statement).
UNAVAILABLE: tuple[type[Exception], ...] = (sqlite3.OperationalError, OperationalError)


@contextlib.contextmanager
def savepoint(conn: Connection) -> Iterator[None]:
    """A savepoint: what runs inside is undone alone if it raises.

    On SQLite it is issued on the driver's cursor (SQLAlchemy's costs ~100 µs, a tenth of a
    postback); elsewhere it is SQLAlchemy's nested transaction.
    """
    if conn.dialect.name != "sqlite":
        with conn.begin_nested():
            yield
        return
    cursor = sqlite_cursor(conn)
    cursor.execute("SAVEPOINT postback")
    try:
        yield
    except BaseException:
        cursor.execute("ROLLBACK TO postback")
        cursor.execute("RELEASE postback")
        raise
    cursor.execute("RELEASE postback")


# --- the SQLite fast path -----------------------------------------------------------------
# SQLAlchemy's per-statement overhead (~50 µs) was most of a postback's cost in the single
# writer thread; the hot statements go straight to the sqlite3 cursor of the same connection
# and transaction, with SQLAlchemy's own type processors so the stored values are identical.


@functools.cache
def column_processors(table: Table, dialect: Dialect) -> dict[str, tuple[Any, Any]]:
    """(bind, result) processors of each column, as SQLAlchemy would apply them."""
    result: dict[str, tuple[Any, Any]] = {}
    for column in table.columns:
        impl = column.type.dialect_impl(dialect)
        result[column.name] = (impl.bind_processor(dialect), impl.result_processor(dialect, None))
    return result


def _sqlite_bind(conn: Connection, table: Table, values: Mapping[str, Any]) -> dict[str, Any]:
    processors = column_processors(table, conn.dialect)
    bound: dict[str, Any] = {}
    for name, value in values.items():
        bind = processors[name][0]
        bound[name] = bind(value) if bind is not None and value is not None else value
    return bound


def sqlite_cursor(conn: Connection) -> Any:
    return conn.connection.driver_connection.cursor()  # type: ignore[union-attr]


def _sqlite_select_one(
    conn: Connection, table: Table, columns: Sequence[str], key: Mapping[str, Any]
) -> dict[str, Any] | None:
    sql = _select_sql(table.name, tuple(columns), tuple(key))
    row = sqlite_cursor(conn).execute(sql, _sqlite_bind(conn, table, key)).fetchone()
    if row is None:
        return None
    processors = column_processors(table, conn.dialect)
    values: dict[str, Any] = {}
    for name, value in zip(columns, row, strict=True):
        load = processors[name][1]
        values[name] = load(value) if load is not None else value
    return values


def _sqlite_insert(
    conn: Connection, table: Table, values: Mapping[str, Any], on_conflict: str = ""
) -> int | None:
    sql = _insert_sql(table.name, tuple(values), on_conflict)
    row = sqlite_cursor(conn).execute(sql, _sqlite_bind(conn, table, values)).fetchone()
    return int(row[0]) if row is not None else None


def _sqlite_update(
    conn: Connection, table: Table, values: Mapping[str, Any], key: Mapping[str, Any]
) -> None:
    sql = _update_sql(table.name, tuple(values), tuple(key))
    params = _sqlite_bind(conn, table, values)
    params.update({f"key_{k}": v for k, v in _sqlite_bind(conn, table, key).items()})
    sqlite_cursor(conn).execute(sql, params)


@functools.cache
def _select_sql(table: str, columns: tuple[str, ...], key: tuple[str, ...]) -> str:
    where = " AND ".join(f"{name} = :{name}" for name in key)
    return f"SELECT {', '.join(columns)} FROM {table} WHERE {where}"


@functools.cache
def _insert_sql(table: str, columns: tuple[str, ...], on_conflict: str) -> str:
    names = ", ".join(columns)
    marks = ", ".join(f":{name}" for name in columns)
    return f"INSERT INTO {table} ({names}) VALUES ({marks}) {on_conflict} RETURNING id"


@functools.cache
def _update_sql(table: str, columns: tuple[str, ...], key: tuple[str, ...]) -> str:
    assignments = ", ".join(f"{name} = :{name}" for name in columns)
    where = " AND ".join(f"{name} = :key_{name}" for name in key)
    return f"UPDATE {table} SET {assignments} WHERE {where}"
