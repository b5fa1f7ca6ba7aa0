"""Migrations produce exactly the declared schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from clickloop.storage.db import upgrade
from clickloop.storage.tables import metadata


def test_migrated_database_matches_tables(engine: Engine) -> None:
    """Upgrading an empty database yields the tables of tables.py, no more, no less."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
    names = set(inspect(engine).get_table_names()) - {"alembic_version"}
    assert names == set(metadata.tables)


def test_upgrade_is_idempotent(engine: Engine) -> None:
    """Running the migrations again changes nothing."""
    upgrade(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
