"""Statements straight on the driver, in a few fixed sizes, for the write path's hot statements
(the report cubes, uniqueness).

SQLAlchemy Core's per-statement work would cost more than the database's for a click batch's
few dozen upserted rows. Multi-row statements come in a few fixed sizes (`sizes`): sqlite3 and
psycopg keep prepared statements by their text, and a text per batch size pushed them out of
their caches (a new prepare cost more than a run).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from clickloop.storage.conversions import sqlite_cursor

UPSERT_CHUNK = 256  # rows per multi-row upsert at most (a power of two: `sizes`)


def execute(conn: Connection, sql: str, params: tuple[Any, ...]) -> Any:
    """On SQLite straight on the driver's cursor of the same transaction (SQLAlchemy's
    per-statement work was a third of a click batch's cube upkeep)."""
    if conn.dialect.name == "sqlite":
        return sqlite_cursor(conn).execute(sql, params)
    return conn.exec_driver_sql(sql, params)


def sizes(count: int, most: int) -> list[int]:
    """`count` as a sum of powers of two up to `most` (a power of two), largest first: 37 is
    32 + 4 + 1. A multi-row upsert cannot be padded (PostgreSQL refuses a key twice)."""
    parts = [most] * (count // most)
    rest = count % most
    while rest:
        part = 1 << (rest.bit_length() - 1)
        parts.append(part)
        rest -= part
    return parts
