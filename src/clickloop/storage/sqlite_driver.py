"""The SQLite library clickloop opens its databases with, for SQLAlchemy and for the few places
that use the DB-API directly (backups, WAL checkpoints, the click writer's PRAGMAs).

sqlean.py ships a current SQLite (3.50) in its wheel; Python's own `sqlite3` uses the system's
(3.40 on Debian 12, built with SECURE_DELETE and without lookaside memory). At 10M clicks the
top 100 of 283k zones groups in 0.68 s instead of 0.90 s with it (docs/reports.md). Where no
wheel exists (Python 3.14 but on macOS, for now: pyproject.toml) Python's own module is used:
the same API, slower.

A process must open a database through one library only: two copies of SQLite in a process do
not see each other's POSIX locks, and closing a file in one drops the other's locks
(https://sqlite.org/howtocorrupt.html, 2.2.1). So everything here, tests included, imports
`sqlite3` from this module, never the standard library's."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the same DB-API; sqlean.py carries no type hints
    import sqlite3  # noqa: TID251
else:
    try:
        import sqlean.dbapi2 as sqlite3
    except ImportError:  # no wheel for this platform
        import sqlite3  # noqa: TID251

__all__ = ["sqlite3"]
