"""`clickloop offers|campaigns|traffic-sources|affiliate-networks add|list|show|edit|remove`
(and `campaigns pause|resume|archive|restore|clone|link`): the UI's entity pages for a shell,
over the same services (services/entities.py, services/campaigns.py) with the same checks and
messages.

An entity is named by its name (a campaign also by its alias) or its id. `edit` changes only the
options given; a repeatable option given once or more replaces the whole list (an empty value,
e.g. `--offer ''`, empties it). `remove` refuses an entity that clicks, campaigns or offers
refer to (pause a campaign instead): removing it would lose their data.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from clickloop.commands import output
from clickloop.commands.common import now, ready_engine, text
from clickloop.errors import InvalidInput
from clickloop.settings import Settings

Convert = Callable[[Any, Any], Any]  # (engine, what the option parsed) -> the service's value


def _same(engine: Any, value: Any) -> Any:
    return value


def _yes_no(engine: Any, value: str) -> bool:
    return value == "yes"


def _optional_id(table_name: str) -> Convert:
    """A name (or id) of another entity; an empty value clears the reference."""

    def convert(engine: Any, key: str) -> int | None:
        from clickloop.services.entities import resolve_entity

        return resolve_entity(engine, table_name, key) if key else None

    return convert


def _offers(engine: Any, values: list[str]) -> list[tuple[int, int]]:
    """`NAME[:WEIGHT]` (weight 100 when left out) for each offer."""
    from clickloop.services.entities import resolve_entity

    pairs: list[tuple[int, int]] = []
    for value in values:
        name, sep, weight = value.rpartition(":") if ":" in value else (value, "", "100")
        if sep and not (weight.isascii() and weight.strip().isdigit()):
            raise InvalidInput("offers.weight", f"a whole number from 0 to 10000, not {weight!r}")
        pairs.append((resolve_entity(engine, "offers", name), int(weight)))
    return pairs


def _parameters(engine: Any, values: list[str]) -> list[dict[str, str]]:
    """`FIELD:PARAM[:MACRO]`, e.g. `external_id:clickid:{clickid}`."""
    rows = []
    for value in values:
        parts = value.split(":", 2)
        if len(parts) < 2:
            raise InvalidInput("parameters", f"FIELD:PARAM[:MACRO], not {value!r}")
        rows.append(dict(zip(("name", "param", "macro"), parts, strict=False)))
    return rows


def _trainings(engine: Any, values: list[str]) -> dict[str, list[str]]:
    """`TYPE=WORD,WORD`, e.g. `sale=approved,paid`."""
    trainings: dict[str, list[str]] = {}
    for value in values:
        kind, sep, words = value.partition("=")
        if not sep:
            raise InvalidInput("status_trainings", f"TYPE=WORD,WORD, not {value!r}")
        trainings[kind] = words.split(",")
    return trainings


def _postbacks(engine: Any, values: list[str]) -> list[dict[str, str]]:
    return [{"url": url} for url in values]


@dataclass(frozen=True, slots=True)
class Option:
    flag: str
    field: str
    help: str
    convert: Convert = _same
    repeated: bool = False  # repeatable; all its values make one list
    choices: Sequence[str] | None = None


@dataclass(frozen=True, slots=True)
class Kind:
    command: str
    table: str
    noun: str
    columns: tuple[str, ...]
    options: tuple[Option, ...]


KINDS = (
    Kind(
        "offers",
        "offers",
        "offer",
        ("id", "name", "url", "affiliate_network_id", "payout", "currency", "upsell"),
        (
            Option("--url", "url", "where visitors are sent (macros allowed)"),
            Option(
                "--network",
                "affiliate_network_id",
                "its affiliate network (name or id; '' for none)",
                _optional_id("affiliate_networks"),
            ),
            Option("--payout", "payout", "the payout per conversion, e.g. 2.50"),
            Option("--currency", "currency", "the payout's currency (ISO 4217), e.g. USD"),
            Option("--upsell", "upsell", "counts upsells (yes/no)", _yes_no, choices=("yes", "no")),
        ),
    ),
    Kind(
        "campaigns",
        "campaigns",
        "campaign",
        ("id", "name", "alias", "status", "traffic_source_id", "cost_model", "cost_value"),
        (
            Option("--alias", "alias", "its link's path: letters, digits, - and _"),
            Option(
                "--source",
                "traffic_source_id",
                "its traffic source (name or id; '' for none)",
                _optional_id("traffic_sources"),
            ),
            Option(
                "--offer",
                "offers",
                "an offer and its weight, NAME[:WEIGHT] (weight 100 if left out); repeatable",
                _offers,
                repeated=True,
            ),
            Option("--cost-model", "cost_model", "none, cpc, cpm, cpa, cps or revshare"),
            Option("--cost", "cost_value", "the cost model's amount, e.g. 0.05"),
            Option("--status", "status", "active or paused", choices=("active", "paused")),
            Option(
                "--tracking-domain",
                "tracking_domain",
                "the base URL of its link, one of the tracking_domains setting ('' for the "
                "default)",
            ),
            Option(
                "--postback",
                "postbacks",
                "an S2S postback URL of the campaign's own (macros allowed); repeatable",
                _postbacks,
                repeated=True,
            ),
        ),
    ),
    Kind(
        "traffic-sources",
        "traffic_sources",
        "traffic source",
        ("id", "name", "template", "postback_method", "postback_url"),
        (
            Option(
                "--parameter",
                "parameters",
                "a link parameter FIELD:PARAM[:MACRO], e.g. external_id:clickid:{clickid}; "
                "repeatable",
                _parameters,
                repeated=True,
            ),
            Option("--postback-url", "postback_url", "its S2S postback URL (macros allowed)"),
            Option("--postback-method", "postback_method", "GET or POST"),
            Option("--postback-body", "postback_body", "the POST body (macros allowed)"),
            Option(
                "--postback-statuses",
                "postback_statuses",
                "the conversion types it is told of, e.g. sale,lead (none: all)",
            ),
            Option(
                "--response-must-contain",
                "response_must_contain",
                "text a successful answer must contain",
            ),
        ),
    ),
    Kind(
        "affiliate-networks",
        "affiliate_networks",
        "affiliate network",
        ("id", "name", "template", "offer_params", "postback_params"),
        (
            Option("--offer-params", "offer_params", "parameters added to its offers' URLs"),
            Option("--postback-params", "postback_params", "its postback URL's parameters"),
            Option(
                "--training",
                "status_trainings",
                "statuses that mean a conversion type, TYPE=WORD,WORD; repeatable",
                _trainings,
                repeated=True,
            ),
            Option(
                "--allowed-ip",
                "postback_allowed_ips",
                "an address or network its postbacks may come from; repeatable",
                repeated=True,
            ),
            Option("--notes", "notes", "free text"),
        ),
    ),
)


def register(commands: Any, command: Callable[..., Any]) -> dict[str, Any]:
    """Add the four entity groups; returns each group's subparsers (for the template commands
    that cli.py adds to sources and networks)."""
    groups: dict[str, Any] = {}
    for kind in KINDS:
        sub = commands.add_parser(kind.command, help=f"{kind.noun}s").add_subparsers(
            metavar="ACTION"
        )
        groups[kind.command] = sub
        listing = command("list", _list, f"list {kind.noun}s", sub)
        output.add_format_option(listing)
        show = command("show", _show, f"show one {kind.noun}", sub)
        show.add_argument("key", type=text, metavar="NAME")
        output.add_format_option(show)
        add = command("add", _add, f"create a {kind.noun}", sub)
        add.add_argument("name", type=text, metavar="NAME")
        edit = command("edit", _edit, f"change a {kind.noun}'s given fields", sub)
        edit.add_argument("key", type=text, metavar="NAME")
        edit.add_argument("--name", type=text, dest="new_name", help="a new name")
        for action in (add, edit):
            _add_options(action, kind)
        remove = command("remove", _remove, f"delete a {kind.noun} nothing refers to", sub)
        remove.add_argument("key", type=text, metavar="NAME")
        for action in (listing, show, add, edit, remove):
            action.set_defaults(kind=kind)
    campaigns = groups["campaigns"]
    listing = campaigns.choices["list"]
    listing.add_argument(
        "--archived", action="store_true", help="list the archived campaigns (hidden otherwise)"
    )
    for name, status in (("pause", "paused"), ("resume", "active")):
        action = command(name, _set_status, f"set campaigns {status}", campaigns)
        action.add_argument("keys", type=text, metavar="NAME", nargs="+")
        action.set_defaults(status=status)
    archive = command(
        "archive", _archive, "hide campaigns from the list; their links answer 404", campaigns
    )
    archive.add_argument("keys", type=text, metavar="NAME", nargs="+")
    restore = command("restore", _restore, "bring archived campaigns back, paused", campaigns)
    restore.add_argument("keys", type=text, metavar="NAME", nargs="+")
    clone = command("clone", _clone, "copy a campaign with its offers and S2S postbacks", campaigns)
    clone.add_argument("key", type=text, metavar="NAME")
    clone.add_argument("--name", type=text, dest="new_name", help="default: NAME (copy)")
    clone.add_argument("--alias", type=text, dest="new_alias", help="default: ALIAS-copy")
    link = command("link", _link, "print the link to give the campaign's traffic source", campaigns)
    link.add_argument("key", type=text, metavar="NAME")
    return groups


def _add_options(parser: argparse.ArgumentParser, kind: Kind) -> None:
    for option in kind.options:
        parser.add_argument(
            option.flag,
            dest=f"field_{option.field}",
            type=text,
            action="append" if option.repeated else "store",
            choices=option.choices,
            default=argparse.SUPPRESS,
            help=option.help,
        )


def _fields(args: argparse.Namespace, engine: Any) -> dict[str, Any]:
    """The options given, converted to what the service takes."""
    fields: dict[str, Any] = {}
    for option in args.kind.options:
        given = getattr(args, f"field_{option.field}", None)
        if given is None:
            continue
        if option.repeated:
            given = [value for value in given if value]
        fields[option.field] = option.convert(engine, given)
    return fields


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.entities import list_rows
    from clickloop.services.masking import declared_secrets, shown_entity

    engine = ready_engine(settings)
    declared = declared_secrets(engine, settings.data_dir)
    kind: Kind = args.kind
    rows = list_rows(engine, kind.table)
    if kind.table == "campaigns":
        archived = getattr(args, "archived", False)
        rows = [row for row in rows if (row["archived_at"] is not None) == archived]
    rows = [shown_entity(kind.table, row, declared) for row in rows]
    output.print_rows(args, rows, kind.columns, empty=f"no {kind.noun}s yet")
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.entities import get_entity, resolve_entity
    from clickloop.services.masking import declared_secrets, shown_entity

    engine = ready_engine(settings)
    kind: Kind = args.kind
    row = get_entity(engine, kind.table, resolve_entity(engine, kind.table, args.key))
    shown = shown_entity(kind.table, row, declared_secrets(engine, settings.data_dir))
    if kind.table == "campaigns":
        shown["link"] = campaign_link(engine, settings, row)
    output.print_record(args, shown)
    return 0


def _add(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services import entities

    engine = ready_engine(settings)
    kind: Kind = args.kind
    creators = {
        "offers": entities.create_offer,
        "campaigns": entities.create_campaign,
        "traffic_sources": entities.create_traffic_source,
        "affiliate_networks": entities.create_affiliate_network,
    }
    fields = _fields(args, engine)
    if kind.table == "campaigns" and "alias" not in fields:
        raise InvalidInput("alias", "required (--alias): the path of the campaign's link")
    if kind.table == "offers" and "url" not in fields:
        raise InvalidInput("url", "required (--url): where the offer sends visitors")
    new_id = creators[kind.table](engine, name=args.name, now=now(), **fields)
    print(f"created {kind.noun} {new_id}: {args.name}")
    if kind.table == "campaigns":
        from clickloop.services.entities import get_entity

        print(f"link: {campaign_link(engine, settings, get_entity(engine, 'campaigns', new_id))}")
    return 0


def _edit(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.entities import change_entity, resolve_entity

    engine = ready_engine(settings)
    kind: Kind = args.kind
    entity_id = resolve_entity(engine, kind.table, args.key)
    changes = _fields(args, engine)
    if args.new_name is not None:
        changes["name"] = args.new_name
    if not changes:
        raise InvalidInput("options", "give at least one field to change (see --help)")
    with engine.begin() as conn:
        changed = change_entity(conn, kind.table, entity_id, changes, now=now())
    print(f"{kind.noun} {entity_id}: {'changed' if changed else 'nothing to change'}")
    return 0


def _remove(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.entities import remove_entity, resolve_entity

    engine = ready_engine(settings)
    kind: Kind = args.kind
    entity_id = resolve_entity(engine, kind.table, args.key)
    remove_entity(engine, kind.table, entity_id)
    print(f"removed {kind.noun} {entity_id}: {args.key}")
    return 0


def _set_status(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services import campaigns

    engine = ready_engine(settings)
    ids = _resolve_all(engine, args.keys)
    changed = campaigns.set_status(engine, ids, args.status)
    effect = "their links answer 404" if args.status == "paused" else "their links count clicks"
    print(f"{changed} of {len(ids)} campaign(s) set {args.status}: {effect}")
    return 0


def _archive(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services import campaigns

    engine = ready_engine(settings)
    ids = _resolve_all(engine, args.keys)
    changed = campaigns.archive(engine, ids, now=now())
    print(f"{changed} of {len(ids)} campaign(s) archived: their links answer 404, data kept")
    return 0


def _restore(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services import campaigns

    engine = ready_engine(settings)
    ids = _resolve_all(engine, args.keys)
    changed = campaigns.restore(engine, ids)
    print(f"{changed} of {len(ids)} campaign(s) restored, paused: resume them to count clicks")
    return 0


def _clone(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services import campaigns
    from clickloop.services.entities import get_entity, resolve_entity

    engine = ready_engine(settings)
    source_id = resolve_entity(engine, "campaigns", args.key)
    new_id = campaigns.clone(engine, source_id, now=now(), name=args.new_name, alias=args.new_alias)
    copy = get_entity(engine, "campaigns", new_id)
    print(f"created campaign {new_id}: {copy['name']} (a copy of campaign {source_id})")
    print(f"link: {campaign_link(engine, settings, copy)}")
    return 0


def _resolve_all(engine: Any, keys: Sequence[str]) -> list[int]:
    from clickloop.services.entities import resolve_entity

    return [resolve_entity(engine, "campaigns", key) for key in keys]


def _link(args: argparse.Namespace, settings: Settings) -> int:
    from clickloop.services.entities import get_entity, resolve_entity

    engine = ready_engine(settings)
    row = get_entity(engine, "campaigns", resolve_entity(engine, "campaigns", args.key))
    print(campaign_link(engine, settings, row))
    return 0


def campaign_link(engine: Any, settings: Settings, campaign: dict[str, Any]) -> str:
    """The link the UI shows: on the campaign's tracking domain, the source's parameters with
    their macros left for it to fill."""
    from clickloop.services.campaigns import link_of

    return link_of(engine, campaign, default_base=settings.base_url)
