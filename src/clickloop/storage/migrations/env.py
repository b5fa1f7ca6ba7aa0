"""Alembic environment: runs against the engine clickloop hands over in `config.attributes`."""

from __future__ import annotations

from alembic import context

from clickloop.storage.tables import metadata

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    if connection.dialect.name == "postgresql":
        # Building an index on a large table may take longer than a request's statement.
        connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()
