"""SQLite's multi-row INSERTs: rows read back as given, whatever columns a chunk leaves out."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, Table, Text, select, text

from clickloop.storage import sqlite_rows
from clickloop.storage.conversions import sqlite_cursor
from clickloop.storage.db import make_engine

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text),
    Column("note", Text),
    Column("flag", Text, server_default=text("'on'")),
)
COLUMNS = ("name", "note", "flag")


def insert_and_read(
    tmp_path: Path,
    rows: list[dict[str, str | None]],
    columns: tuple[str, ...] = COLUMNS,
    statements: list[str] | None = None,
) -> list[tuple[object, ...]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'rows.db'}")
    metadata.create_all(engine)
    with engine.begin() as conn:
        if statements is not None:
            sqlite_cursor(conn).connection.set_trace_callback(statements.append)
        outcome = list(sqlite_rows.insert_rows(conn, things, columns, rows))
        sqlite_cursor(conn).connection.set_trace_callback(None)
    assert [(len(chunk), inserted) for chunk, inserted, _ in outcome] == [(len(rows), len(rows))]
    with engine.connect() as conn:
        stored = [
            tuple(r) for r in conn.execute(select(things.c.name, things.c.note, things.c.flag))
        ]
    engine.dispose()
    return stored


def test_a_column_none_in_every_row_is_left_out_and_reads_back_null(tmp_path: Path) -> None:
    """`note` is None everywhere: left out of the statement, it is NULL all the same; `flag`,
    which has a server default, stays in it so that an explicit None is not replaced."""
    rows = [
        {"name": "a", "note": None, "flag": None},
        {"name": "b", "note": None, "flag": None},
    ]
    statements: list[str] = []
    stored = insert_and_read(tmp_path, rows, statements=statements)
    assert stored == [("a", None, None), ("b", None, None)]
    assert [sql.split(" VALUES")[0] for sql in statements] == ["INSERT INTO things (name, flag)"]


def test_rows_of_one_chunk_keep_their_own_values_where_some_are_none(tmp_path: Path) -> None:
    rows = [
        {"name": "a", "note": "x", "flag": "off"},
        {"name": None, "note": None, "flag": None},
        {"name": "c", "note": None, "flag": "on"},
    ]
    assert insert_and_read(tmp_path, rows) == [
        ("a", "x", "off"),
        (None, None, None),
        ("c", None, "on"),
    ]


def test_rows_of_nothing_but_none_are_still_inserted(tmp_path: Path) -> None:
    rows: list[dict[str, str | None]] = [{"name": None, "note": None}] * 2
    assert insert_and_read(tmp_path, rows, ("name", "note")) == [(None, None, "on")] * 2
