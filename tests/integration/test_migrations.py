"""Migrations produce exactly the declared schema."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine

from clickloop.storage.db import upgrade
from clickloop.storage.tables import metadata


def _partitions(conn: Connection) -> set[str]:
    """The partitions of partitioned tables (PostgreSQL): storage, not schema of their own."""
    if conn.dialect.name != "postgresql":
        return set()
    rows = conn.exec_driver_sql(
        "SELECT relname FROM pg_class WHERE relispartition AND relkind = 'r'"
    )
    return {name for (name,) in rows}


def _differences(conn: Connection) -> list[Any]:
    partitions = _partitions(conn)

    def include_name(name: str | None, kind: str, parents: Any) -> bool:
        return not (kind == "table" and name in partitions)

    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "include_name": include_name}
    )
    return list(compare_metadata(context, metadata))


def test_migrated_database_matches_tables(engine: Engine) -> None:
    """Upgrading an empty database yields the tables of tables.py, no more, no less."""
    with engine.connect() as conn:
        assert _differences(conn) == []
        partitions = _partitions(conn)
    names = set(inspect(engine).get_table_names()) - {"alembic_version"} - partitions
    assert names == set(metadata.tables)


def test_primary_keys_match_tables(engine: Engine) -> None:
    """Every primary key is the declared one; SQLite's clicks keep the click id alone, which
    PostgreSQL's partitions cannot (their keys hold the partition key, created_at)."""
    inspector = inspect(engine)
    for table in metadata.tables.values():
        declared = [column.name for column in table.primary_key]
        if table.name == "clicks" and engine.dialect.name == "sqlite":
            declared = ["subid"]
        assert inspector.get_pk_constraint(table.name)["constrained_columns"] == declared


def test_clicks_partitioned_by_day_on_postgresql(engine: Engine) -> None:
    """On PostgreSQL clicks is partitioned by range of created_at as tables.py declares, with a
    default partition and every day from today on for a week."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite keeps one clicks table")
    with engine.connect() as conn:
        key = conn.exec_driver_sql("SELECT pg_get_partkeydef('clicks'::regclass)").scalar()
        partitions = _partitions(conn)
    declared = metadata.tables["clicks"].dialect_options["postgresql"]["partition_by"]
    assert key == declared == "RANGE (created_at)"
    assert "clicks_default" in partitions
    assert len([name for name in partitions if name.startswith("clicks_p")]) == 8


def test_upgrade_is_idempotent(engine: Engine) -> None:
    """Running the migrations again changes nothing."""
    upgrade(engine)
    with engine.connect() as conn:
        assert _differences(conn) == []
