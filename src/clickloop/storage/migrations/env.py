"""Alembic environment: runs against the engine clickloop hands over in `config.attributes`."""

from __future__ import annotations

from alembic import context

from clickloop.storage.tables import metadata

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()
