"""`clickloop settings show|set`: the tracker settings the UI's settings page changes, through
the same service (services/entities.py `update_settings`) and checks.

`set KEY VALUE` reads VALUE as JSON when it starts with `[` or `{`; otherwise lists are comma
separated (`allowed_networks 10.0.0.0/8,192.168.1.0/24`, an empty value empties the list) and
mappings are `NAME=VALUE` pairs separated by `;` (`aliases 'clickid=subid;type=status'`,
`status_trainings 'sale=approved,paid;lead=pending'`).
"""

from __future__ import annotations

import argparse
import getpass
import json
from collections.abc import Callable
from typing import Any

from clickloop.commands import output
from clickloop.commands.common import ready_engine, text
from clickloop.errors import InvalidInput
from clickloop.settings import Settings

# Internal: the key has `clickloop postback-key`; the daily cubes' zone is kept by
# `clickloop reports rebuild --daily`.
HIDDEN = ("config_version", "postback_key", "report_daily_zone")


def register(commands: Any, command: Callable[..., Any]) -> None:
    from clickloop.services.entities import CHANGEABLE_SETTINGS

    group = commands.add_parser("settings", help="tracker settings").add_subparsers(
        metavar="ACTION"
    )
    output.add_format_option(command("show", _show, "print the tracker settings", group))
    change = command("set", _set, "change one tracker setting", group)
    change.add_argument("key", choices=CHANGEABLE_SETTINGS, metavar="KEY")
    change.add_argument("value", type=text, metavar="VALUE")


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.entities import get_settings

    stored = get_settings(ready_engine(settings))
    output.print_record(args, {k: v for k, v in stored.items() if k not in HIDDEN})
    return 0


def _set(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.entities import update_settings

    value = parsed_value(args.key, args.value)
    stored = update_settings(ready_engine(settings), {args.key: value}, actor=_actor())
    print(f"{args.key} = {json.dumps(stored[args.key], ensure_ascii=False)}")
    return 0


def parsed_value(key: str, value: str) -> Any:
    """A setting's value as typed on the command line (see the module's docstring)."""
    from clickloop.services.entities import DEFAULT_SETTINGS

    if value.lstrip().startswith(("[", "{")):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise InvalidInput(key, f"not valid JSON: {exc}") from exc
    default = DEFAULT_SETTINGS[key]
    if isinstance(default, list):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(default, dict):
        pairs: dict[str, Any] = {}
        for entry in filter(str.strip, value.split(";")):
            name, sep, target = entry.partition("=")
            if not sep:
                raise InvalidInput(key, f"NAME=VALUE pairs separated by ';', not {entry!r}")
            pairs[name.strip()] = target.split(",") if key == "status_trainings" else target
        return pairs
    if isinstance(default, int) and value.isascii() and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


def _actor() -> str:
    """Who changes settings from the command line, for the log."""
    try:
        return f"CLI user {getpass.getuser()}"
    except (KeyError, OSError):  # a uid without a name (a container)
        return "CLI"
