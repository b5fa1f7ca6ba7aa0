"""Backups of the whole database while it serves, and their restore into an empty database.

SQLite: the online backup API copies the database in one step, a read transaction, so the copy
is the database as of one commit while writers go on (WAL: readers do not block them). The copy
is written next to PATH and renamed into place once checked, so PATH is never half a backup.

PostgreSQL: `pg_dump --format=custom` (one snapshot, the same guarantee) and `pg_restore`; both
must be installed, of the server's major version or newer.

A restore goes only into a database that holds no tables (an absent SQLite file, or a database
made with `createdb`), so that it never mixes with or overwrites data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import URL, Engine

from clickloop.errors import ConfigError
from clickloop.storage.sqlite_driver import sqlite3

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_DUMP_MAGIC = b"PGDMP"


def backup(engine: Engine, path: Path) -> None:
    """Write a consistent copy of the database behind `engine` to `path` (which must not exist)."""
    if path.exists():
        raise ConfigError(f"{path} exists: a backup never overwrites a file, choose another path")
    if not path.parent.is_dir():
        raise ConfigError(f"{path.parent} is not a directory")
    if engine.dialect.name == "sqlite":
        _sqlite_backup(_sqlite_path(engine.url), path)
    else:
        _pg_tool("pg_dump", engine.url, ["--format=custom", "--no-owner", f"--file={path}"])


def restore(engine: Engine, path: Path) -> None:
    """Load a backup made by `backup` into the empty database behind `engine`."""
    try:
        with path.open("rb") as file:
            head = file.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    dialect = engine.dialect.name
    kind = {SQLITE_MAGIC: "sqlite"}.get(head) or (
        "postgresql" if head.startswith(PG_DUMP_MAGIC) else None
    )
    if kind is None:
        raise ConfigError(f"{path} is not a clickloop backup (neither SQLite nor pg_dump's)")
    if kind != dialect:
        names = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
        raise ConfigError(f"{path} is a {names[kind]} backup: restore it into {names[kind]}")
    if dialect == "sqlite":
        target = _sqlite_path(engine.url)
        if target.exists() and target.stat().st_size > 0:
            raise ConfigError(f"{target} exists: restore into another data directory or URL")
        target.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_backup(path, target)
        return
    with engine.connect() as conn:
        if inspect(conn).get_table_names():
            raise ConfigError("the database has tables: restore into an empty one (createdb)")
    engine.dispose()  # pg_restore's own connection must be the only writer
    _pg_tool("pg_restore", engine.url, ["--no-owner", "--single-transaction", str(path)])


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise ConfigError("an in-memory SQLite database has nothing to back up")
    return Path(url.database)


def _sqlite_backup(source: Path, target: Path) -> None:
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        writer = sqlite3.connect(partial)
        try:
            reader.backup(writer)  # one step: one read transaction, one commit's state
            (verdict,) = writer.execute("PRAGMA quick_check").fetchone()
            if verdict != "ok":
                raise ConfigError(f"the copy of {source} failed its check: {verdict}")
            # One self-contained file (no -wal beside it): what a restore or sqlite3 expects.
            writer.execute("PRAGMA journal_mode=DELETE")
        finally:
            reader.close()
            writer.close()
        os.replace(partial, target)
    except sqlite3.Error as exc:
        raise ConfigError(f"copying {source} failed: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)


def _pg_tool(tool: str, url: URL, arguments: list[str]) -> None:
    program = shutil.which(tool)
    if program is None:
        raise ConfigError(
            f"{tool} is not installed: install the PostgreSQL client tools of your server's "
            "version (Debian: apt-get install postgresql-client)"
        )
    # libpq's own URL, without SQLAlchemy's driver name; the password travels in the
    # environment, not on a command line that `ps` shows.
    libpq = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    environment = dict(os.environ)
    if url.password:
        environment["PGPASSWORD"] = str(url.password)
    done = subprocess.run(
        [program, f"--dbname={libpq}", *arguments],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        message = done.stderr.strip().splitlines()
        raise ConfigError(f"{tool} failed: {message[-1] if message else done.returncode}")
