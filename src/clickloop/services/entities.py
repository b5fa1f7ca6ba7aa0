"""Use cases for the tracker's configuration: settings, traffic sources, affiliate networks,
offers and campaigns. Every change bumps `config_version`, which hot-path caches poll.
"""

from __future__ import annotations

import inspect
import ipaddress
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from clickloop.domain.clicks import CLICK_FIELDS
from clickloop.domain.costs import COST_MODELS
from clickloop.domain.report_facts import MARKABLE, MAX_MARKED
from clickloop.domain.secrets import MASK
from clickloop.errors import Conflict, InvalidInput, NotFound
from clickloop.storage import tables as t
from clickloop.storage.db import reader_engine
from clickloop.storage.report_cubes import forget_marked_dimensions

log = logging.getLogger(__name__)

ALIAS_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
RESERVED_ALIASES = frozenset({"api", "admin", "static", "metrics", "healthz", "favicon.ico"})
METHODS = ("GET", "POST")
# Why a campaign postback taken off its campaign is disabled (kept: its deliveries refer to it).
REMOVED_FROM_CAMPAIGN = "removed from the campaign"
# What an ignored postback may answer (Keitaro answers 200; some networks want an error).
ANSWER_STATUSES = (200, 202, 400, 403, 404, 422)

DEFAULT_SETTINGS: dict[str, Any] = {
    "currency": "USD",
    "timezone": "UTC",
    "aliases": {},  # {"clickid": "subid", "type": "status"}
    "status_trainings": {},  # global trainings: {"sale": ["approved"], ...}
    "allowed_networks": [],  # outbound S2S may reach these private networks (CIDR)
    "s2s_disable_after_hours": 72,  # an S2S target failing this long with no success is disabled
    "ignored_answer_status": 200,  # HTTP status of an ignored postback's answer
    # high-cardinality click fields kept in the report_marked aggregate (docs/reports.md)
    "report_marked_dimensions": [],
    # public base URLs campaign links are built with; the first is the default (empty: the
    # server's public URL)
    "tracking_domains": [],
    "config_version": 0,
}


def new_postback_key() -> str:
    return secrets.token_hex(16)


# --- settings -----------------------------------------------------------------------------


def ensure_settings(engine: Engine) -> None:
    """Write the default settings that are missing, and a postback key if there is none."""
    with engine.begin() as conn:
        present = {row.key for row in conn.execute(select(t.settings.c.key))}
        defaults = DEFAULT_SETTINGS | {"postback_key": new_postback_key()}
        missing = [{"key": k, "value": v} for k, v in defaults.items() if k not in present]
        if missing:
            conn.execute(insert(t.settings), missing)


def read_settings(conn: Connection) -> dict[str, Any]:
    stored = {row.key: row.value for row in conn.execute(select(t.settings))}
    return DEFAULT_SETTINGS | stored


def get_settings(engine: Engine) -> dict[str, Any]:
    with reader_engine(engine).connect() as conn:
        return read_settings(conn)


def write_setting(conn: Connection, key: str, value: Any) -> None:
    changed = conn.execute(update(t.settings).where(t.settings.c.key == key).values(value=value))
    if changed.rowcount == 0:
        conn.execute(insert(t.settings).values(key=key, value=value))


def bump_config_version(conn: Connection) -> None:
    version = read_settings(conn)["config_version"]
    write_setting(conn, "config_version", int(version) + 1)


def read_config_version(engine: Engine) -> int:
    with reader_engine(engine).connect() as conn:
        return read_config_version_in(conn)


def read_config_version_in(conn: Connection) -> int:
    """The version every configuration change bumps, read in the caller's transaction."""
    value = conn.execute(
        select(t.settings.c.value).where(t.settings.c.key == "config_version")
    ).scalar()
    return int(value or 0)


def check_settings(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Settings changes, checked and normalised; InvalidInput names the first bad one."""
    for key in changes:
        if key not in _SETTING_VALIDATORS:
            raise InvalidInput(key, "not a setting that can be changed")
    return {key: _SETTING_VALIDATORS[key](value) for key, value in changes.items()}


def update_settings(
    engine: Engine, changes: Mapping[str, Any], *, actor: str = "unknown"
) -> dict[str, Any]:
    """Apply settings changes in one transaction; a currency change is refused once money is
    stored (see `check_currency_change`), and then nothing of `changes` is written. The keys
    whose value changed are logged with `actor` (who asked: a user, a token, the CLI)."""
    changes = check_settings(changes)
    with engine.begin() as conn:
        before = read_settings(conn)
        if "currency" in changes:
            check_currency_change(conn, before["currency"], changes["currency"])
        if "tracking_domains" in changes:
            _check_domains_in_use(conn, changes["tracking_domains"])
        for key, value in changes.items():
            write_setting(conn, key, value)
        bump_config_version(conn)
        after = read_settings(conn)
    forget_marked_dimensions()
    changed = [key for key in changes if before.get(key) != after.get(key)]
    log.info("settings changed by %s: %s", actor, ", ".join(changed) or "nothing")
    if "timezone" in changed:
        log.warning(
            "reports in %s read the hourly aggregates until `clickloop reports rebuild --daily` "
            "moves the daily ones to it (docs/reports.md, Aggregates)",
            after["timezone"],
        )
    return after


def check_currency_change(conn: Connection, current: str, wanted: str) -> None:
    """Refuse a new tracker currency once amounts are stored in the current one.

    Conversions, click costs and campaign CPC prices hold bare amounts in the tracker currency:
    a new code would relabel them (100 USD shown as 100 EUR), so the currency is fixed from then on.
    """
    if wanted == current:
        return
    v, c, k = t.conversions.c, t.clicks.c, t.campaigns.c
    stored = (
        select(v.id).limit(1),
        select(c.subid).where(c.cost.is_not(None)).limit(1),
        select(k.id).where(k.cost_value != 0).limit(1),
    )
    if any(conn.execute(query).first() is not None for query in stored):
        raise InvalidInput(
            "currency",
            f"stays {current}: conversions and costs are stored in {current}, and changing the "
            f"currency would show those amounts as {wanted} without converting them",
        )


def _check_domains_in_use(conn: Connection, kept: Sequence[str]) -> None:
    """Refuse to drop a tracking domain a campaign's link is built with: its link, already
    given to a traffic source, would silently change on every page."""
    k = t.campaigns.c
    used = conn.execute(
        select(k.tracking_domain, k.name)
        .where(k.tracking_domain.is_not(None), k.tracking_domain.not_in(list(kept) or [""]))
        .order_by(k.id)
        .limit(1)
    ).first()
    if used is not None:
        raise InvalidInput(
            "tracking_domains",
            f"{used.tracking_domain} is the tracking domain of campaign {used.name!r}: "
            "give it another one first",
        )


def rotate_postback_key(engine: Engine, *, actor: str = "unknown") -> str:
    key = new_postback_key()
    with engine.begin() as conn:
        write_setting(conn, "postback_key", key)
        bump_config_version(conn)
    log.info("settings changed by %s: postback_key (rotated)", actor)
    return key


# --- entities -----------------------------------------------------------------------------
# Each kind has one validator (`_x_values`) shared by create and update, so an update is
# "merge the changes into the stored entity, then validate the whole as if new".


def _traffic_source_values(
    *,
    name: str,
    parameters: Sequence[Mapping[str, str]] = (),
    postback_url: str | None = None,
    postback_method: str = "GET",
    postback_body: str | None = None,
    postback_headers: Mapping[str, str] | None = None,
    postback_statuses: Sequence[str] = (),
    response_must_contain: str | None = None,
    template: str | None = None,
) -> dict[str, Any]:
    if not isinstance(parameters, list | tuple):
        raise InvalidInput("parameters", "a list of {name, param, macro} rows")
    return {
        "name": _name(name),
        "template": _optional_text("template", template, 200),
        "parameters": [_parameter_row(row) for row in parameters],
        "postback_url": _optional_url("postback_url", postback_url),
        "postback_method": _method("postback_method", postback_method),
        "postback_body": _optional_text("postback_body", postback_body, 10000),
        "postback_headers": _headers("postback_headers", postback_headers),
        "postback_statuses": _statuses(postback_statuses),
        "response_must_contain": _optional_text(
            "response_must_contain", response_must_contain, 200
        ),
    }


def _affiliate_network_values(
    *,
    name: str,
    offer_params: str = "",
    postback_params: str = "",
    status_trainings: Mapping[str, Sequence[str]] | None = None,
    postback_allowed_ips: Sequence[str] = (),
    notes: str = "",
    template: str | None = None,
) -> dict[str, Any]:
    return {
        "name": _name(name),
        "template": _optional_text("template", template, 200),
        "offer_params": _text("offer_params", offer_params, 2000),
        "postback_params": _text("postback_params", postback_params, 4000),
        "status_trainings": _trainings("status_trainings", status_trainings),
        "postback_allowed_ips": _networks("postback_allowed_ips", postback_allowed_ips),
        "notes": _text("notes", notes, 10000),
    }


def _offer_values(
    *,
    name: str,
    url: str,
    affiliate_network_id: int | None = None,
    currency: str = "USD",
    payout: Decimal | str | int = Decimal(0),
    upsell: bool = False,
) -> dict[str, Any]:
    return {
        "name": _name(name),
        "url": _url("url", url),
        "affiliate_network_id": _optional_id("affiliate_network_id", affiliate_network_id),
        "currency": _currency(currency),
        "payout": _money("payout", payout),
        "upsell": _bool("upsell", upsell),
    }


def _campaign_values(
    *,
    name: str,
    alias: str,
    traffic_source_id: int | None = None,
    cost_model: str = "none",
    cost_value: Decimal | str | int = Decimal(0),
    status: str = "active",
    tracking_domain: str | None = None,
) -> dict[str, Any]:
    if not isinstance(alias, str) or not ALIAS_PATTERN.match(alias):
        raise InvalidInput("alias", "1-64 letters, digits, '-' or '_', not a reserved word")
    if alias.lower() in RESERVED_ALIASES:
        raise InvalidInput("alias", "1-64 letters, digits, '-' or '_', not a reserved word")
    if cost_model not in COST_MODELS:
        raise InvalidInput("cost_model", f"one of {', '.join(COST_MODELS)}")
    if status not in ("active", "paused"):
        raise InvalidInput("status", "active or paused")
    return {
        "name": _name(name),
        "alias": alias,
        "traffic_source_id": _optional_id("traffic_source_id", traffic_source_id),
        "cost_model": cost_model,
        "cost_value": _money("cost_value", cost_value),
        "status": status,
        "tracking_domain": base_url("tracking_domain", tracking_domain)
        if tracking_domain
        else None,
    }


def create_traffic_source(engine: Engine, **fields: Any) -> int:
    with engine.begin() as conn:
        return add_traffic_source(conn, **fields)


def add_traffic_source(conn: Connection, *, now: datetime, **fields: Any) -> int:
    values = _traffic_source_values(**fields) | {"postback_enabled": True, "created_at": now}
    return _insert_in(conn, t.traffic_sources, values, "traffic source", values["name"])


def create_affiliate_network(engine: Engine, **fields: Any) -> int:
    with engine.begin() as conn:
        return add_affiliate_network(conn, **fields)


def add_affiliate_network(conn: Connection, *, now: datetime, **fields: Any) -> int:
    values = _affiliate_network_values(**fields) | {"created_at": now}
    return _insert_in(conn, t.affiliate_networks, values, "affiliate network", values["name"])


def create_offer(engine: Engine, **fields: Any) -> int:
    with engine.begin() as conn:
        return add_offer(conn, **fields)


def add_offer(conn: Connection, *, now: datetime, **fields: Any) -> int:
    values = _offer_values(**fields) | {"created_at": now}
    if values["affiliate_network_id"] is not None:
        _require(conn, t.affiliate_networks, values["affiliate_network_id"], "affiliate network")
    return _insert_in(conn, t.offers, values, "offer", values["name"])


def create_campaign(engine: Engine, **fields: Any) -> int:
    with engine.begin() as conn:
        return add_campaign(conn, **fields)


def add_campaign(
    conn: Connection,
    *,
    now: datetime,
    offers: Sequence[tuple[int, int]] = (),
    postbacks: Sequence[Mapping[str, Any]] = (),
    **fields: Any,
) -> int:
    """Create a campaign with its (offer id, weight) pairs and its own S2S postbacks."""
    values = _campaign_values(**fields) | {"created_at": now}
    if values["traffic_source_id"] is not None:
        _require(conn, t.traffic_sources, values["traffic_source_id"], "traffic source")
    _require_domain(conn, values["tracking_domain"])
    campaign_id = _insert_in(conn, t.campaigns, values, "campaign", values["alias"])
    _write_campaign_offers(conn, campaign_id, offers)
    _write_campaign_postbacks(conn, campaign_id, postbacks, now)
    return campaign_id


def _write_campaign_offers(
    conn: Connection, campaign_id: int, offers: Sequence[tuple[int, int]]
) -> None:
    conn.execute(delete(t.campaign_offers).where(t.campaign_offers.c.campaign_id == campaign_id))
    seen: set[int] = set()
    for offer_id, weight in offers:
        offer_id = _optional_id("offers.offer_id", offer_id) or 0
        _require(conn, t.offers, offer_id, "offer")
        if offer_id in seen:
            raise InvalidInput("offers", f"offer {offer_id} is listed twice")
        seen.add(offer_id)
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 10000:
            raise InvalidInput("offers.weight", "a whole number from 0 to 10000")
        conn.execute(
            insert(t.campaign_offers).values(
                campaign_id=campaign_id, offer_id=offer_id, weight=weight, active=True
            )
        )


def _write_campaign_postbacks(
    conn: Connection, campaign_id: int, postbacks: Sequence[Mapping[str, Any]], now: datetime
) -> None:
    """Replace the campaign's S2S postbacks, keeping the id (and delivery history) of each
    postback whose URL, method and body are unchanged."""
    existing = {
        (row.url, row.method, row.body): row.id
        for row in conn.execute(
            select(t.campaign_postbacks).where(t.campaign_postbacks.c.campaign_id == campaign_id)
        )
    }
    kept: set[int] = set()
    for postback in _postback_list(postbacks):
        values = _postback_values(postback)
        same = existing.get((values["url"], values["method"], values["body"]))
        if same is not None and same not in kept:
            kept.add(same)
            conn.execute(
                update(t.campaign_postbacks)
                .where(t.campaign_postbacks.c.id == same)
                .values(
                    headers=values["headers"],
                    statuses=values["statuses"],
                    response_must_contain=values["response_must_contain"],
                )
            )
            continue
        conn.execute(
            insert(t.campaign_postbacks).values(
                campaign_id=campaign_id, enabled=True, created_at=now, **values
            )
        )
    gone = set(existing.values()) - kept
    if gone:
        # Disabled rather than deleted: queued deliveries and their history still point here.
        conn.execute(
            update(t.campaign_postbacks)
            .where(t.campaign_postbacks.c.id.in_(gone))
            .values(enabled=False, disabled_reason=REMOVED_FROM_CAMPAIGN)
        )


POSTBACK_FIELDS = ("url", "method", "body", "headers", "statuses", "response_must_contain")


def _postback_list(postbacks: Any) -> list[Mapping[str, Any]]:
    if not isinstance(postbacks, list | tuple) or not all(
        isinstance(p, Mapping) for p in postbacks
    ):
        raise InvalidInput("postbacks", "a list of {url, method, statuses, body} objects")
    return list(postbacks)


def _postback_values(postback: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "url": _url("postbacks.url", str(postback.get("url", ""))),
        "method": _method("postbacks.method", str(postback.get("method", "GET"))),
        "body": _optional_text("postbacks.body", postback.get("body"), 10000),
        "headers": _headers("postbacks.headers", postback.get("headers")),
        "statuses": _statuses(postback.get("statuses", ())),
        "response_must_contain": _optional_text(
            "postbacks.response_must_contain", postback.get("response_must_contain"), 200
        ),
    }


_VALIDATORS: dict[str, Any] = {
    "traffic_sources": _traffic_source_values,
    "affiliate_networks": _affiliate_network_values,
    "offers": _offer_values,
    "campaigns": _campaign_values,
}
_KINDS = {
    "traffic_sources": "traffic source",
    "affiliate_networks": "affiliate network",
    "offers": "offer",
    "campaigns": "campaign",
}


def update_entity(
    engine: Engine, table_name: str, entity_id: int, changes: Mapping[str, Any], *, now: datetime
) -> None:
    """Merge `changes` into a stored entity and validate the result as a whole."""
    with engine.begin() as conn:
        change_entity(conn, table_name, entity_id, changes, now=now)


def change_entity(
    conn: Connection,
    table_name: str,
    entity_id: int,
    changes: Mapping[str, Any],
    *,
    now: datetime,
) -> bool:
    """`update_entity` inside the caller's transaction; whether anything differs from before
    (nothing is written, and the config version stays, when nothing does)."""
    table = t.metadata.tables[table_name]
    validator = _VALIDATORS[table_name]
    kind = _KINDS[table_name]
    accepted = set(inspect.signature(validator).parameters)
    related = {"offers", "postbacks"} if table_name == "campaigns" else set()
    unknown = set(changes) - accepted - related
    if unknown:
        raise InvalidInput(sorted(unknown)[0], f"not a field of a {kind}")
    row = conn.execute(select(table).where(table.c.id == entity_id)).first()
    if row is None:
        raise NotFound(kind, entity_id)
    stored = {name: value for name, value in row._mapping.items() if name in accepted}
    values = validator(**(stored | {k: v for k, v in changes.items() if k in accepted}))
    if table_name == "campaigns" and row.archived_at is not None and values["status"] == "active":
        raise InvalidInput("status", "the campaign is archived: restore it first")
    if values.get("affiliate_network_id") is not None:
        _require(conn, t.affiliate_networks, values["affiliate_network_id"], "affiliate network")
    if values.get("traffic_source_id") is not None:
        _require(conn, t.traffic_sources, values["traffic_source_id"], "traffic source")
    if values.get("tracking_domain") != stored.get("tracking_domain"):
        _require_domain(conn, values.get("tracking_domain"))
    offers = offer_pairs(changes["offers"]) if "offers" in changes else None
    postbacks = None
    if "postbacks" in changes:
        postbacks = [_postback_values(p) for p in _postback_list(changes["postbacks"])]
    if (
        values == validator(**stored)
        and (offers is None or sorted(offers) == _stored_offer_pairs(conn, entity_id))
        and (postbacks is None or postbacks == _stored_postbacks(conn, entity_id))
    ):
        return False
    try:
        with conn.begin_nested():
            conn.execute(update(table).where(table.c.id == entity_id).values(**values))
    except IntegrityError as exc:
        raise Conflict(kind, values.get("alias") or values.get("name")) from exc
    if offers is not None:
        _write_campaign_offers(conn, entity_id, offers)
    if postbacks is not None:
        _write_campaign_postbacks(conn, entity_id, postbacks, now)
    bump_config_version(conn)
    return True


def _stored_offer_pairs(conn: Connection, campaign_id: int) -> list[tuple[int, int]]:
    links = t.campaign_offers
    rows = conn.execute(
        select(links.c.offer_id, links.c.weight).where(links.c.campaign_id == campaign_id)
    )
    return sorted((row.offer_id, row.weight) for row in rows)


def _stored_postbacks(conn: Connection, campaign_id: int) -> list[dict[str, Any]]:
    postbacks = t.campaign_postbacks
    rows = conn.execute(
        select(postbacks)
        .where(postbacks.c.campaign_id == campaign_id, postbacks.c.enabled.is_(True))
        .order_by(postbacks.c.id)
    )
    return [
        {name: row._mapping[name] for name in POSTBACK_FIELDS} | {"headers": row.headers or {}}
        for row in rows
    ]


def offer_pairs(offers: Any) -> list[tuple[int, int]]:
    """Offers given as [(id, weight)] or [{"offer_id": id, "weight": w}]."""
    if not isinstance(offers, list | tuple):
        raise InvalidInput("offers", "a list of {offer_id, weight}")
    pairs: list[tuple[int, int]] = []
    for item in offers:
        if isinstance(item, Mapping):
            pairs.append((item.get("offer_id"), item.get("weight", 100)))  # type: ignore[arg-type]
        elif isinstance(item, list | tuple) and len(item) == 2:
            pairs.append((item[0], item[1]))
        else:
            raise InvalidInput("offers", "a list of {offer_id, weight}")
    return pairs


def list_rows(engine: Engine, table_name: str) -> list[dict[str, Any]]:
    table = t.metadata.tables[table_name]
    with reader_engine(engine).connect() as conn:
        return [
            dict(row._mapping) for row in conn.execute(select(table).order_by(*table.primary_key))
        ]


def get_entity(engine: Engine, table_name: str, entity_id: int) -> dict[str, Any]:
    """One entity by id; a campaign comes with its offer weights and enabled S2S postbacks."""
    table = t.metadata.tables[table_name]
    with reader_engine(engine).connect() as conn:
        row = conn.execute(select(table).where(table.c.id == entity_id)).first()
        if row is None:
            raise NotFound(table_name.rstrip("s").replace("_", " "), entity_id)
        item = dict(row._mapping)
        if table_name == "campaigns":
            item["offers"] = [
                {"offer_id": r.offer_id, "weight": r.weight}
                for r in conn.execute(
                    select(t.campaign_offers).where(t.campaign_offers.c.campaign_id == entity_id)
                )
            ]
            item["postbacks"] = [
                dict(r._mapping)
                for r in conn.execute(
                    select(t.campaign_postbacks).where(
                        t.campaign_postbacks.c.campaign_id == entity_id,
                        t.campaign_postbacks.c.enabled.is_(True),
                    )
                )
            ]
    return item


def find_id_by_name(conn: Connection, table_name: str, name: str) -> int:
    table = t.metadata.tables[table_name]
    found = conn.execute(select(table.c.id).where(table.c.name == name)).scalar()
    if found is None:
        raise NotFound(table_name.rstrip("s").replace("_", " "), name)
    return int(found)


def resolve_entity(engine: Engine, table_name: str, key: str) -> int:
    """An entity's id from what a person types: its name, a campaign's alias, or its id."""
    table = t.metadata.tables[table_name]
    matches = [table.c.name == key]
    if table_name == "campaigns":
        matches.append(table.c.alias == key)
    if key.isascii() and key.isdigit() and int(key) < 2**31:
        matches.append(table.c.id == int(key))
    with reader_engine(engine).connect() as conn:
        for match in matches:  # in this order: a name made of digits is still a name
            found = conn.execute(select(table.c.id).where(match)).scalar()
            if found is not None:
                return int(found)
    raise NotFound(_KINDS[table_name], key)


# What refers to an entity of each kind, and what to do instead of removing it.
_USES: dict[str, tuple[tuple[Any, str, str], ...]] = {
    "traffic_sources": (
        (t.campaigns.c.traffic_source_id, "campaigns", "give its campaigns another source"),
        (t.clicks.c.traffic_source_id, "clicks", "it stays for the reports"),
    ),
    "affiliate_networks": (
        (t.offers.c.affiliate_network_id, "offers", "give its offers another network"),
    ),
    "offers": (
        (t.campaign_offers.c.offer_id, "campaigns", "take it off its campaigns first"),
        (t.clicks.c.offer_id, "clicks", "take it off its campaigns; it stays for the reports"),
    ),
    "campaigns": ((t.clicks.c.campaign_id, "clicks", "pause it instead"),),
}


def remove_entity(engine: Engine, table_name: str, entity_id: int) -> None:
    """Delete an entity nothing refers to; one that clicks, campaigns or offers refer to is
    refused (InvalidInput says what refers to it), since removing it would lose their data."""
    table = t.metadata.tables[table_name]
    kind = _KINDS[table_name]
    with engine.begin() as conn:
        _require(conn, table, entity_id, kind)
        for column, what, instead in _USES[table_name]:
            if conn.execute(select(column).where(column == entity_id).limit(1)).first():
                raise InvalidInput("remove", f"{kind} {entity_id} is used by {what} ({instead})")
        if table_name == "campaigns":
            for owned in (t.campaign_offers, t.campaign_postbacks):
                conn.execute(delete(owned).where(owned.c.campaign_id == entity_id))
        conn.execute(delete(table).where(table.c.id == entity_id))
        bump_config_version(conn)


# --- validation ---------------------------------------------------------------------------


def _insert_in(conn: Connection, table: Any, values: dict[str, Any], kind: str, key: str) -> int:
    try:
        with conn.begin_nested():
            primary_key = conn.execute(insert(table).values(**values)).inserted_primary_key
    except IntegrityError as exc:
        raise Conflict(kind, key) from exc
    bump_config_version(conn)
    assert primary_key is not None
    return int(primary_key[0])


def _require(conn: Connection, table: Any, row_id: int, kind: str) -> None:
    if conn.execute(select(table.c.id).where(table.c.id == row_id)).first() is None:
        raise NotFound(kind, row_id)


def _require_domain(conn: Connection, domain: str | None) -> None:
    """A campaign's tracking domain is one of the settings' (None: the default one)."""
    if domain is None:
        return
    known = read_settings(conn)["tracking_domains"]
    if domain not in known:
        listed = ", ".join(known) if known else "none yet: add it under Settings first"
        raise InvalidInput("tracking_domain", f"one of the tracking domains ({listed})")


def base_url(field: str, value: Any) -> str:
    """A public base URL links are built with: http(s)://host[:port], no path, query, user or
    fragment (the tracker answers campaign links at the root); normalised to lower case
    without a trailing slash."""
    reason = "an http(s) URL of a host, like https://track.example.com (no path)"
    if not isinstance(value, str) or len(value.strip()) > 200:
        raise InvalidInput(field, reason)
    text = value.strip().rstrip("/")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(field, f"{reason}, not {text[:100]!r}") from exc
    host = parts.hostname or ""
    if (
        parts.scheme.lower() not in ("http", "https")
        or not (re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", host) or _is_address(host))
        or parts.path
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
        or text.endswith(":")
    ):
        raise InvalidInput(field, f"{reason}, not {text[:100]!r}")
    shown_host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme.lower()}://{shown_host}" + (f":{port}" if port is not None else "")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _name(value: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput("name", "required, at most 200 characters")
    value = value.strip()
    if not value or len(value) > 200:
        raise InvalidInput("name", "required, at most 200 characters")
    return value


def _text(field: str, value: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidInput(field, f"at most {limit} characters")
    return (value or "").strip()


def _word(field: str, value: str) -> str:
    value = str(value).strip().lower()
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", value):
        raise InvalidInput(field, f"not a valid name: {value!r}")
    return value


def _url(field: str, value: str) -> str:
    if not isinstance(value, str) or len(value.strip()) > 4000:
        raise InvalidInput(field, "an http(s) URL of at most 4000 characters")
    value = value.strip()
    if not re.match(r"^https?://[^\s/?#]+", value, re.IGNORECASE):
        raise InvalidInput(field, "an http(s) URL of at most 4000 characters")
    if any(ch in value for ch in "\r\n\t"):
        raise InvalidInput(field, "control characters are not allowed")
    if MASK in value:  # a URL read back masked must not overwrite the real one
        raise InvalidInput(field, f"contains {MASK} where a secret was masked: send the full URL")
    return value


def _optional_text(field: str, value: Any, limit: int) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidInput(field, f"text of at most {limit} characters")
    return value


def _optional_id(field: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
        raise InvalidInput(field, "a positive whole number")
    return value


def _bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(field, "true or false")
    return value


def _words(field: str, values: Any) -> list[str]:
    if isinstance(values, str):
        values = values.split(",")
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
        raise InvalidInput(field, "a list of words")
    words = [v.strip().lower() for v in values if v.strip()]
    if any(len(w) > 100 for w in words):
        raise InvalidInput(field, "words of at most 100 characters")
    return words


def _network(field: str, value: Any) -> str:
    try:
        return str(ipaddress.ip_network(str(value), strict=False))
    except ValueError as exc:
        raise InvalidInput(field, f"not an address or network: {value!r}") from exc


def _optional_url(field: str, value: str | None) -> str | None:
    return _url(field, value) if value else None


def _method(field: str, value: str) -> str:
    value = str(value or "GET").upper()
    if value not in METHODS:
        raise InvalidInput(field, "GET or POST")
    return value


# An HTTP field name (RFC 9110 token); the ones the HTTP client must own are refused.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")
_OWN_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te"}
MAX_HEADERS = 20


def _headers(field: str, value: Any) -> dict[str, str]:
    """S2S request headers: {name: value template}; values may hold macros."""
    if value is None or value == "":
        return {}
    if not isinstance(value, Mapping) or len(value) > MAX_HEADERS:
        raise InvalidInput(field, f"an object of at most {MAX_HEADERS} name: value pairs")
    headers: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise InvalidInput(field, f"not a header name: {name!r}")
        if name.lower() in _OWN_HEADERS:
            raise InvalidInput(field, f"{name} is set by the HTTP client")
        if not isinstance(text, str) or len(text) > 4000:
            raise InvalidInput(field, f"{name}: text of at most 4000 characters")
        if re.search(r"[\x00-\x1f\x7f]", text):
            raise InvalidInput(field, f"{name}: control characters are not allowed")
        if MASK in text:  # a value read back masked must not overwrite the real one
            raise InvalidInput(field, f"{name} contains {MASK} where a secret was masked")
        headers[name] = text
    return headers


def _statuses(values: Any) -> list[str]:
    if isinstance(values, str):
        values = [v for v in values.split(",") if v.strip()]
    if not isinstance(values, list | tuple):
        raise InvalidInput("statuses", "a list of conversion types")
    return [_word("statuses", v) for v in values]


def _currency(value: str) -> str:
    value = str(value or "").strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", value):
        raise InvalidInput("currency", "a three-letter ISO 4217 code")
    return value


def _money(field: str, value: Decimal | str | int) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | str | int):
        raise InvalidInput(field, f"not a number: {value!r}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise InvalidInput(field, f"not a number: {value!r}") from exc
    if not amount.is_finite() or abs(amount) >= Decimal(10**12):
        raise InvalidInput(field, "a finite amount below 10^12")
    return amount


def _parameter_row(row: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(row, Mapping):
        raise InvalidInput("parameters", "a list of {name, param, macro} rows")
    name = str(row.get("name", "")).strip()
    param = str(row.get("param", "")).strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name):
        raise InvalidInput("parameters.name", f"not a valid field name: {name!r}")
    if not param or len(param) > 64:
        raise InvalidInput("parameters.param", "required, at most 64 characters")
    if name.startswith("sub_id_") and name not in CLICK_FIELDS:
        raise InvalidInput("parameters.name", "sub_id_1 to sub_id_30")
    return {"name": name, "param": param, "macro": str(row.get("macro", ""))[:200]}


# --- settings values ----------------------------------------------------------------------


def _timezone(value: Any) -> str:
    try:
        if isinstance(value, str) and len(value) <= 64:
            ZoneInfo(value)
            return value
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    raise InvalidInput("timezone", f"not a known IANA time zone: {str(value)[:64]!r}")


def _aliases(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise InvalidInput("aliases", 'a mapping like {"clickid": "subid"}')
    return {_word("aliases", name): _word("aliases", target) for name, target in value.items()}


def _trainings(field: str, value: Any) -> dict[str, list[str]]:
    if not isinstance(value or {}, Mapping):
        raise InvalidInput(field, 'a mapping like {"sale": ["approved"]}')
    return {_word(field, kind): _words(field, words) for kind, words in (value or {}).items()}


def _networks(field: str, value: Any) -> list[str]:
    if not isinstance(value, list | tuple):
        raise InvalidInput(field, "a list of addresses or networks")
    return [_network(field, item) for item in value]


def _whole(field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(field, f"a whole number from {low} to {high}")
    return value


def _answer_status(value: Any) -> int:
    if isinstance(value, bool) or value not in ANSWER_STATUSES:
        raise InvalidInput(
            "ignored_answer_status", f"one of {', '.join(map(str, ANSWER_STATUSES))}"
        )
    return int(value)


def _marked(value: Any) -> list[str]:
    field = "report_marked_dimensions"
    if not isinstance(value, list | tuple) or len(value) > MAX_MARKED:
        raise InvalidInput(field, f"a list of at most {MAX_MARKED} click fields")
    unknown = [str(name)[:64] for name in value if name not in MARKABLE]
    if unknown:
        raise InvalidInput(field, f"not a click field that can be marked: {unknown[0]!r}")
    return list(dict.fromkeys(value))


MAX_TRACKING_DOMAINS = 20


def _tracking_domains(value: Any) -> list[str]:
    field = "tracking_domains"
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list | tuple) or len(value) > MAX_TRACKING_DOMAINS:
        raise InvalidInput(field, f"a list of at most {MAX_TRACKING_DOMAINS} base URLs")
    return list(dict.fromkeys(base_url(field, item) for item in value))


_SETTING_VALIDATORS: dict[str, Any] = {
    "tracking_domains": _tracking_domains,
    "report_marked_dimensions": _marked,
    "currency": _currency,
    "timezone": _timezone,
    "aliases": _aliases,
    "status_trainings": lambda value: _trainings("status_trainings", value),
    "allowed_networks": lambda value: _networks("allowed_networks", value),
    "s2s_disable_after_hours": lambda value: _whole("s2s_disable_after_hours", value, 1, 8760),
    "ignored_answer_status": _answer_status,
}
CHANGEABLE_SETTINGS = tuple(_SETTING_VALIDATORS)
