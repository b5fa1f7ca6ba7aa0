"""What every command needs: the clock, an engine over a database that is ready, and argument
types that refuse what no command can use."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clickloop.errors import ConfigError
from clickloop.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]
MAX_LIST = 100_000


def now() -> datetime:
    return datetime.now(UTC)


def engine(settings: Settings) -> Any:
    from clickloop.storage.db import make_engine

    return make_engine(
        settings.effective_database_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        timeout=settings.database_timeout_seconds,
        statement_timeout=settings.database_statement_timeout_seconds,
    )


def ready_engine(settings: Settings, *, current: bool = True) -> Any:
    """An engine over a migrated database (`current`: with every migration of this version,
    else the code would meet tables it does not know); a missing SQLite file is not created by
    asking."""
    from clickloop.storage.db import behind_by, is_migrated

    url = settings.effective_database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        # Connecting would create an empty file (and its directory) for a database that isn't.
        raise ConfigError(f"no database at {url}: run `clickloop init` first")
    ready = engine(settings)
    if not is_migrated(ready):
        raise ConfigError("the database is not initialised: run `clickloop init` first")
    pending = behind_by(ready) if current else []
    if pending:
        raise ConfigError(
            f"the database lacks {len(pending)} migration(s) of this version ({pending[0]} "
            f"first): run `clickloop db upgrade` (docs/deployment.md, Upgrades)"
        )
    return ready


def utc_time(text: str) -> datetime:
    """An ISO 8601 time from the command line, in UTC when it names no zone."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def text(value: str) -> str:
    """A text argument: no NUL or other control characters (no database column holds a NUL,
    and no name or URL needs them)."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise argparse.ArgumentTypeError(f"control characters are not allowed: {value!r}")
    return value


def count(value: str) -> int:
    """How many rows a listing shows: 1 to MAX_LIST."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_LIST:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {MAX_LIST}, not {value!r}")
    return number


def identifier(value: str) -> int:
    """A row id: 1 to 2^31 - 1 (what the database's ids hold)."""
    if not (value.isascii() and value.isdigit()) or not 0 < int(value) < 2**31:
        raise argparse.ArgumentTypeError(f"not an id: {value!r}")
    return int(value)
