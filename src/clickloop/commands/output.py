"""How commands print records: a table (rich) for a person at a terminal, JSON lines for a
program. `--format` chooses; without it a terminal gets the table and a pipe or file JSON lines.

JSON lines carry every field of a record; a table the columns that fit a screen.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

FORMATS = ("table", "json")
T = TypeVar("T")


def add_format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="table (the default on a terminal) or JSON lines (the default in a pipe or file)",
    )


def chosen_format(args: argparse.Namespace) -> str:
    chosen: str | None = getattr(args, "format", None)
    return chosen or ("table" if sys.stdout.isatty() else "json")


def print_rows(
    args: argparse.Namespace,
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    empty: str,
) -> None:
    """Records as a table or JSON lines; `empty` goes to stderr when there are none."""
    rows = list(rows)
    if not rows:
        print(empty, file=sys.stderr)
        return
    if chosen_format(args) == "json":
        for row in rows:
            print(json.dumps(row, default=str, ensure_ascii=False))
        return
    from rich.table import Table

    table = Table(*columns, highlight=False)
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    _console().print(table)


def print_record(args: argparse.Namespace, record: Mapping[str, Any]) -> None:
    """One record: a two-column table of its fields, or one JSON object."""
    if chosen_format(args) == "json":
        print(json.dumps(record, default=str, ensure_ascii=False))
        return
    from rich.table import Table

    table = Table("field", "value", highlight=False)
    for name, value in record.items():
        table.add_row(_cell(name), _cell(value))
    _console().print(table)


def _console() -> Any:
    from rich.console import Console

    # Written through print()'s sys.stdout so a closed pipe raises where main() expects it;
    # a table asked for in a pipe or file is as wide as its content (no terminal to fit).
    width = None if sys.stdout.isatty() else 10_000
    return Console(file=sys.stdout, width=width, highlight=False, soft_wrap=False)


def _cell(value: Any) -> Any:
    """A value as table text: never rich markup, control characters shown escaped."""
    from rich.text import Text

    if value is None:
        return Text("")
    if isinstance(value, list | dict):
        value = json.dumps(value, default=str, ensure_ascii=False)
    value = str(value)
    shown = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in value
    )
    return Text(shown)


def progress(items: Iterable[T], *, total: int, description: str) -> Iterator[T]:
    """`items`, with a progress bar on stderr when it is a terminal (nothing otherwise)."""
    if not sys.stderr.isatty():
        yield from items
        return
    from rich.console import Console
    from rich.progress import track

    yield from track(items, total=total, description=description, console=Console(stderr=True))


def print_summary(what: str, outcomes: Iterable[str]) -> None:
    """`3 lines: 1 accepted, 2 ignored` on stderr, after long work."""
    counts = Counter(outcomes)
    detail = ", ".join(f"{n} {outcome}" for outcome, n in counts.most_common())
    print(f"{sum(counts.values())} {what}" + (f": {detail}" if detail else ""), file=sys.stderr)
