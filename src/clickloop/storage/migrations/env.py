"""Alembic environment: runs against the engine clickloop hands over in `config.attributes`."""

from __future__ import annotations

from alembic import context

from clickloop.storage.tables import metadata

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # SQLite's way to change a table others reference (batch mode rebuilds it): foreign keys
        # off outside the transaction (a no-op inside one), checked before the commit.
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
    try:
        with connection.begin():
            if connection.dialect.name == "postgresql":
                # Building an index on a large table may take longer than a request's statement.
                connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
            context.configure(
                connection=connection,
                target_metadata=metadata,
                render_as_batch=sqlite,
                compare_type=True,
            )
            context.run_migrations()
            if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first():
                raise RuntimeError("the migration left rows whose foreign keys point nowhere")
    finally:
        if sqlite:
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")
