"""`clickloop traffic-sources conversion-api NAME` and `clickloop campaigns conversion-api NAME`:
a Meta Conversions API or TikTok Events API target, as the UI's forms and the API make it
(services/adplatforms.py). Run again on a traffic source, it replaces the target (the edit).

The access token is read from stdin with `--access-token-stdin` so that it stays out of the
shell's history and the process list; what is printed afterwards is masked.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from clickloop.commands.common import now, ready_engine, text
from clickloop.errors import InvalidInput
from clickloop.settings import Settings

PLATFORM_NAMES = {"meta": "Meta Conversions API", "tiktok": "TikTok Events API"}


def register(groups: dict[str, Any], command: Callable[..., Any]) -> None:
    """Add `conversion-api` to the traffic-sources and campaigns groups."""
    for group, table, what in (
        ("traffic-sources", "traffic_sources", "set (or replace) the source's S2S target"),
        ("campaigns", "campaigns", "add an S2S postback to the campaign"),
    ):
        action = command(
            "conversion-api",
            _conversion_api,
            f"{what}: Meta Conversions API or TikTok Events API",
            groups[group],
        )
        action.add_argument("key", type=text, metavar="NAME")
        action.add_argument("--platform", required=True, choices=sorted(PLATFORM_NAMES))
        action.add_argument(
            "--pixel-id", required=True, type=text, help="Meta pixel id / TikTok pixel code"
        )
        token = action.add_mutually_exclusive_group(required=True)
        token.add_argument(
            "--access-token-stdin",
            action="store_true",
            help="read the access token from the first line of stdin",
        )
        token.add_argument(
            "--access-token", type=text, help="the access token (visible to `ps`: prefer stdin)"
        )
        action.add_argument("--test-event-code", type=text, help="the platform's test code")
        action.add_argument(
            "--event-source-url", type=text, help="the page the conversion happens on"
        )
        action.add_argument(
            "--statuses", type=text, help="conversion types sent (default lead,sale,registration,"
            "deposit)"
        )  # fmt: skip
        action.add_argument(
            "--event",
            action="append",
            default=[],
            type=text,
            metavar="TYPE=EVENT",
            help="send a conversion type under this event name (over the defaults); repeatable",
        )
        action.add_argument(
            "--api-base", type=text, help="a gateway (or a test receiver) instead of the platform"
        )
        action.set_defaults(table=table)


def _conversion_api(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services import adplatforms
    from clickloop.services.entities import get_entity, resolve_entity
    from clickloop.services.masking import declared_secrets, shown_entity

    token = sys.stdin.readline().strip() if args.access_token_stdin else args.access_token
    fields: dict[str, Any] = {
        "platform": args.platform,
        "pixel_id": args.pixel_id,
        "access_token": token,
        "test_event_code": args.test_event_code,
        "event_source_url": args.event_source_url,
        "events": _events(args.event),
        "api_base": args.api_base,
    }
    if args.statuses is not None:
        fields["statuses"] = args.statuses
    engine = ready_engine(settings)
    entity_id = resolve_entity(engine, args.table, args.key)
    if args.table == "traffic_sources":
        adplatforms.set_source_postback(engine, entity_id, fields, now=now())
    else:
        adplatforms.add_campaign_postback(engine, entity_id, fields, now=now())
    shown = shown_entity(
        args.table,
        get_entity(engine, args.table, entity_id),
        declared_secrets(engine, settings.data_dir),
    )
    target = _source_target(shown) if args.table == "traffic_sources" else shown["postbacks"][-1]
    noun = "traffic source" if args.table == "traffic_sources" else "campaign"
    print(f"{noun} {entity_id}: {PLATFORM_NAMES[args.platform]} target set")
    print(f"  {target['method']} {target['url']}")
    for name, value in (target["headers"] or {}).items():
        print(f"  {name}: {value}")
    print(f"  statuses: {','.join(target['statuses'])}")
    return 0


def _source_target(source: dict[str, Any]) -> dict[str, Any]:
    names = ("url", "method", "headers", "statuses")
    return {name: source[f"postback_{name}"] for name in names}


def _events(pairs: list[str]) -> dict[str, str] | None:
    events: dict[str, str] = {}
    for pair in pairs:
        kind, sep, name = pair.partition("=")
        if not sep:
            raise InvalidInput("--event", f"TYPE=EVENT, e.g. lead=Lead, not {pair!r}")
        events[kind.strip()] = name.strip()
    return events or None
