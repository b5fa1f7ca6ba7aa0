"""`clickloop clicks|conversions list|show` and `clickloop postbacks list`: what the tracker
recorded, newest first, filtered like the API's and the UI's lists (services/queries.py)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from clickloop.commands import output
from clickloop.commands.common import count, identifier, ready_engine, text, utc_time
from clickloop.settings import Settings

CLICK_COLUMNS = ("subid", "created_at", "campaign_id", "offer_id", "ip", "country", "device_type")
CONVERSION_COLUMNS = (
    "id",
    "converted_at",
    "subid",
    "campaign_id",
    "type",
    "original_status",
    "payout",
    "currency",
)
POSTBACK_COLUMNS = ("id", "received_at", "method", "subid", "outcome", "reason", "remote_ip")


def register(commands: Any, command: Callable[..., Any]) -> None:
    clicks = commands.add_parser("clicks", help="recorded clicks").add_subparsers(metavar="ACTION")
    listing = command("list", _clicks, "list clicks, newest first", clicks)
    _campaign_and_since(listing)
    show = command("show", _click, "show one click", clicks)
    show.add_argument("subid", type=text)
    output.add_format_option(show)

    conversions = commands.add_parser("conversions", help="recorded conversions").add_subparsers(
        metavar="ACTION"
    )
    listing = command("list", _conversions, "list conversions, newest first", conversions)
    _campaign_and_since(listing)
    listing.add_argument("--until", type=utc_time, help="only those before (ISO 8601)")
    listing.add_argument("--type", type=text, help="only this conversion type (sale, lead...)")
    listing.add_argument("--subid", type=text, help="only this click's")
    show = command("show", _conversion, "show one conversion", conversions)
    show.add_argument("id", type=identifier)
    output.add_format_option(show)


def register_postback_list(postbacks: Any, command: Callable[..., Any]) -> None:
    """`postbacks list`, in the `postbacks` group that cli.py makes."""
    from clickloop.domain.postbacks import Outcome

    listing = command("list", _postbacks, "list received postbacks, newest first", postbacks)
    listing.add_argument("--outcome", choices=[str(outcome) for outcome in Outcome])
    listing.add_argument("--reason", type=text, help="only those whose reason contains this")
    listing.add_argument("--subid", type=text, help="only this click's")
    listing.add_argument("--since", type=utc_time, help="only those received at or after")
    _limit_and_format(listing)


def _campaign_and_since(listing: argparse.ArgumentParser) -> None:
    listing.add_argument("--campaign", type=text, help="only this campaign's (name, alias or id)")
    listing.add_argument("--since", type=utc_time, help="only those at or after (ISO 8601)")
    _limit_and_format(listing)


def _limit_and_format(listing: argparse.ArgumentParser) -> None:
    listing.add_argument("--limit", type=count, default=50, help="at most this many (50)")
    output.add_format_option(listing)


def _newest(lister: Callable[..., Any], engine: Any, limit: int, **filters: Any) -> list[Any]:
    """Up to `limit` rows, read a page at a time."""
    from clickloop.services.queries import MAX_LIMIT

    rows: list[Any] = []
    cursor = None
    while len(rows) < limit:
        page = lister(engine, limit=min(MAX_LIMIT, limit - len(rows)), cursor=cursor, **filters)
        rows.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    return rows


def _campaign_id(engine: Any, key: str | None) -> int | None:
    from clickloop.services.entities import resolve_entity

    return None if key is None else resolve_entity(engine, "campaigns", key)


def _clicks(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.queries import list_clicks

    engine = ready_engine(settings)
    rows = _newest(
        list_clicks,
        engine,
        args.limit,
        campaign_id=_campaign_id(engine, args.campaign),
        since=args.since,
    )
    output.print_rows(args, rows, CLICK_COLUMNS, empty="no clicks match")
    return 0


def _click(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.queries import get_click

    output.print_record(args, get_click(ready_engine(settings), args.subid[:64]))
    return 0


def _conversions(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.queries import list_conversions

    engine = ready_engine(settings)
    rows = _newest(
        list_conversions,
        engine,
        args.limit,
        campaign_id=_campaign_id(engine, args.campaign),
        since=args.since,
        until=args.until,
        type=args.type,
        subid=args.subid,
    )
    output.print_rows(args, rows, CONVERSION_COLUMNS, empty="no conversions match")
    return 0


def _conversion(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.queries import get_conversion

    output.print_record(args, get_conversion(ready_engine(settings), args.id))
    return 0


def _postbacks(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.queries import list_received_postbacks

    rows = _newest(
        list_received_postbacks,
        ready_engine(settings),
        args.limit,
        outcome=args.outcome,
        reason=args.reason,
        subid=args.subid,
        since=args.since,
    )
    output.print_rows(args, rows, POSTBACK_COLUMNS, empty="no received postbacks match")
    return 0
