"""Engines and migrations: one place that knows how SQLite and PostgreSQL are set up."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine, make_url

from clickloop.errors import ConfigError
from clickloop.storage.sqlite_driver import sqlite3

MIGRATIONS = Path(__file__).parent / "migrations"
READ_ONLY = "sqlite_read_only"


def writer_engine(engine: Engine) -> Engine:
    """The engine for writing: on SQLite every transaction already takes the write lock up front
    (see make_engine), so this is the engine itself, named for what its callers do."""
    return engine


def reader_engine(engine: Engine) -> Engine:
    """The same engine, but its SQLite transactions only read and never take the write lock, so
    long reports do not hold up the click writer. Writing through it can fail with "locked"."""
    return engine.execution_options(**{READ_ONLY: True})


def make_engine(
    url: str,
    *,
    sqlite_synchronous: str = "FULL",
    pool_size: int = 5,
    timeout: float = 5.0,
    statement_timeout: float = 60.0,
) -> Engine:
    """An engine for `url`: SQLite in WAL mode with a busy timeout, or PostgreSQL via psycopg 3
    with `timeout` (seconds) on connecting, pool checkout and lock waits, `statement_timeout`
    on statements (0: none), and TCP keepalives (see `_postgresql_connect_args`)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # sqlean.py keeps its statements by use count and drops the newest first: with Python's
        # 128 the writer prepared its cube upserts again and again (bench/cube_upkeep: 176
        # instead of 91 us per click; 512 was enough, 1024 leaves room, +7 MB).
        connect_args = {"check_same_thread": False, "cached_statements": 1024}
        engine = create_engine(url, module=sqlite3, connect_args=connect_args)
        synchronous = sqlite_synchronous.upper()
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ConfigError(
                f"sqlite_synchronous must be FULL, NORMAL or EXTRA, not {synchronous}"
            )

        @event.listens_for(engine, "connect")
        def _configure(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, decide when transactions begin, so that
            # savepoints and rollbacks work (SQLAlchemy's documented pysqlite recipe).
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # Transactions take the write lock up front (waiting up to busy_timeout): a deferred
            # one that read first and then writes after another connection committed fails at
            # once with SQLITE_BUSY. Only readers (reader_engine) begin deferred.
            read_only = conn.get_execution_options().get(READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if not url.startswith("postgresql+"):
        raise ConfigError(f"unsupported database URL (use sqlite:/// or postgresql://): {url}")
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=timeout,
        connect_args=_postgresql_connect_args(
            timeout, statement_timeout, make_url(url).query.get("options")
        ),
    )


def _postgresql_connect_args(
    timeout: float, statement_timeout: float, url_options: str | tuple[str, ...] | None
) -> dict[str, Any]:
    """libpq parameters that turn a database that stopped answering into errors.

    A hung server (stopped, or its host unreachable) is bounded here only where the network
    sees it: connecting, an unacknowledged send (`tcp_user_timeout`), an idle connection
    (keepalives); lock and statement limits are the server's own. A server that accepts bytes
    but never answers is bounded by the writer's wait for its commit (storage/writer.py).
    The URL's own `options` come last, so that they win.
    """
    millis = max(1, int(timeout * 1000))
    options = f"-c lock_timeout={millis}"
    if statement_timeout:
        options += f" -c statement_timeout={max(1, int(statement_timeout * 1000))}"
    if url_options:
        given = (url_options,) if isinstance(url_options, str) else url_options
        options = " ".join((options, *given))
    return {
        "connect_timeout": max(2, math.ceil(timeout)),  # libpq's minimum is 2 s
        "keepalives": 1,
        "keepalives_idle": max(1, math.ceil(timeout)),
        "keepalives_interval": 1,
        "keepalives_count": 3,
        "tcp_user_timeout": millis,
        "options": options,
    }


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision` (idempotent)."""
    command.upgrade(alembic_config(engine), revision)


def is_migrated(engine: Engine) -> bool:
    return "alembic_version" in inspect(engine).get_table_names()


def behind_by(engine: Engine) -> list[str]:
    """The migrations this version has that the database lacks, oldest first: none when it is
    at this version's head, or at a revision this version does not know (a newer version's:
    older nodes keep running beside the new ones during an upgrade, docs/deployment.md)."""
    scripts = ScriptDirectory.from_config(alembic_config(engine))
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    try:
        pending = list(scripts.iterate_revisions("heads", current))
    except ResolutionError:  # a revision this version does not know
        return []
    return [script.revision for script in reversed(pending)]
