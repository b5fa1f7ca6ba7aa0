"""`clickloop backup PATH` and `clickloop restore PATH` (storage/backup.py): a consistent copy
of the database while the server runs, and its load into an empty database, brought to this
version's schema (`db upgrade`) after."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clickloop.commands.common import engine, ready_engine
from clickloop.settings import Settings


def register(commands: Any, command: Callable[..., Any]) -> None:
    command(
        "backup", _backup, "copy the database to PATH while it serves (SQLite or pg_dump)"
    ).add_argument("path", type=Path)
    command(
        "restore", _restore, "load a backup into an empty database, then upgrade its schema"
    ).add_argument("path", type=Path)


def _backup(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.storage.backup import backup

    # A backup is the first step of an upgrade: of a database behind this version too.
    backup(ready_engine(settings, current=False), args.path)
    print(f"backup written: {args.path} ({args.path.stat().st_size:,} bytes)")
    return 0


def _restore(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.storage.backup import restore
    from clickloop.storage.db import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    target = engine(settings)
    restore(target, args.path)
    upgrade(target)
    print(f"restored {args.path}; the database is at the latest revision")
    return 0
