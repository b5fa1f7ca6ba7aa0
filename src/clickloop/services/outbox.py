"""Queueing S2S deliveries for a changed conversion, inside the caller's transaction.

The conversion, its log row and its deliveries commit together (transactional outbox); the
dispatcher sends them. Macro values follow SPEC §4; see docs/s2s.md for the full list.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import LABEL_STYLE_TABLENAME_PLUS_COL, bindparam, func, select
from sqlalchemy.engine import Connection

from clickloop.domain.deliveries import TargetKind
from clickloop.domain.macros import MacroValue, escape_json, render, render_header, render_json
from clickloop.errors import NotFound
from clickloop.storage import outbox
from clickloop.storage import tables as t

FORM = "application/x-www-form-urlencoded"
# The ad platforms' click ids, kept from the campaign link's query like any custom parameter.
CLICK_ID_PARAMS = ("fbclid", "ttclid", "gclid")
JSON = "application/json"

_CLICK_TEXT_FIELDS = (
    "external_id",
    "keyword",
    "creative_id",
    "ad_campaign_id",
    "source",
    *(f"sub_id_{n}" for n in range(1, t.SUB_ID_COUNT + 1)),
    "ip",
    "user_agent",
    "referrer",
    "language",
    "country",
    "os",
    "browser",
    "device_type",
)


# One round trip for the conversions and everything their macros need, one for the campaigns'
# postbacks: built once, so SQLAlchemy's compiled cache serves every call. Only the columns the
# macros and targets read: loading whole rows (JSON, datetimes) cost more than the rest.
_SOURCE_ID = func.coalesce(t.conversions.c.traffic_source_id, t.campaigns.c.traffic_source_id)
_NEEDED = {
    t.conversions: (
        "id",
        "subid",
        "tid",
        "type",
        "original_status",
        "payout",
        "currency",
        "cost",
        "converted_at",
    ),
    t.clicks: ("subid", "extra", "cost", "created_at", *_CLICK_TEXT_FIELDS),
    t.campaigns: ("id", "name"),
    t.offers: ("id", "name"),
    t.affiliate_networks: ("id", "name"),
    t.traffic_sources: (
        "id",
        "name",
        "postback_url",
        "postback_method",
        "postback_body",
        "postback_headers",
        "postback_statuses",
        "response_must_contain",
        "postback_enabled",
    ),
}
_CONTEXT = (
    select(*(table.c[name] for table, names in _NEEDED.items() for name in names))
    .select_from(
        t.conversions.join(t.campaigns, t.campaigns.c.id == t.conversions.c.campaign_id)
        .outerjoin(t.clicks, t.clicks.c.subid == t.conversions.c.subid)
        .outerjoin(t.offers, t.offers.c.id == t.conversions.c.offer_id)
        .outerjoin(
            t.affiliate_networks, t.affiliate_networks.c.id == t.offers.c.affiliate_network_id
        )
        .outerjoin(t.traffic_sources, t.traffic_sources.c.id == _SOURCE_ID)
    )
    .where(t.conversions.c.id.in_(bindparam("conversion_ids", expanding=True)))
    .set_label_style(LABEL_STYLE_TABLENAME_PLUS_COL)
)
_POSTBACKS = (
    select(t.campaign_postbacks)
    .where(t.campaign_postbacks.c.campaign_id.in_(bindparam("campaign_ids", expanding=True)))
    .order_by(t.campaign_postbacks.c.id)
)
# Conversion ids per context query: well under the databases' parameter limits.
_IDS_PER_QUERY = 500
_TABLES = ("conversions", "clicks", "campaigns", "offers", "affiliate_networks", "traffic_sources")
_CONTEXT_COLUMNS = [(c.table.name, c.name) for c in _CONTEXT.selected_columns]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Target:
    kind: TargetKind
    id: int
    url: str
    method: str
    body: str | None
    headers: dict[str, str]
    statuses: list[str]
    must_contain: str | None
    enabled: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class _Context:
    """A conversion, what its macros need, and its campaign's and source's targets."""

    conversion: dict[str, Any]
    campaign: dict[str, Any]
    parts: dict[str, dict[str, Any] | None]  # click, offer, network, source: None when absent
    targets: list[_Target]


def queue_deliveries(conn: Connection, *, conversion_id: int, now: datetime) -> int:
    """Queue one delivery per matching S2S target of the conversion; return how many were new.

    Targets: the click's traffic source (its S2S URL) and the campaign's own S2S postbacks,
    each when its statuses include the conversion's type ([] = all). A request identical to
    one already queued for the conversion is skipped (dedup key), so re-running is harmless.
    """
    return queue_deliveries_for(conn, [(conversion_id, {})], now=now)


def queue_deliveries_for(
    conn: Connection, changes: Sequence[tuple[int, Mapping[str, Any]]], *, now: datetime
) -> int:
    """`queue_deliveries` for many conversion changes at once (two queries in all), each
    rendered with its conversion's columns overridden by the given values: a conversion that
    changed twice in one batch is sent as each of its states, not twice as the last one."""
    contexts = _load_contexts(conn, {conversion_id for conversion_id, _ in changes})
    rows: list[outbox.NewDelivery] = []
    for conversion_id, state in changes:
        context = contexts.get(conversion_id)
        if context is None:
            raise NotFound("conversion", conversion_id)
        conversion = {**context.conversion, **state}
        values = _macro_values(context, conversion)
        rows.extend(
            _render_target(target, values, conversion_id=conversion_id, now=now)
            for target in context.targets
            if _wants(target.statuses, conversion["type"])
        )
    return outbox.insert_deliveries(conn, rows, now=now)


def render_again(
    conn: Connection, targets: Sequence[tuple[int, TargetKind, int]], *, now: datetime
) -> dict[tuple[int, TargetKind, int], outbox.NewDelivery | str]:
    """What each (conversion id, target kind, target id) renders to now, from the current
    configuration and the stored click and conversion (as it is now); or why nothing does."""
    contexts = _load_contexts(conn, {conversion_id for conversion_id, _, _ in targets})
    rendered: dict[tuple[int, TargetKind, int], outbox.NewDelivery | str] = {}
    for key in targets:
        conversion_id, kind, target_id = key
        context = contexts.get(conversion_id)
        found = (
            [tg for tg in context.targets if (tg.kind, tg.id) == (kind, target_id)]
            if context
            else []
        )
        if context is None or not found:
            rendered[key] = "its target is no longer an S2S target of the conversion"
            continue
        conversion_type = context.conversion["type"]
        if not _wants(found[0].statuses, conversion_type):
            rendered[key] = f"its target no longer sends {conversion_type} conversions"
            continue
        values = _macro_values(context, context.conversion)
        rendered[key] = _render_target(found[0], values, conversion_id=conversion_id, now=now)
    return rendered


def _macro_values(context: _Context, conversion: Mapping[str, Any]) -> dict[str, MacroValue]:
    return build_macro_values(
        conversion=conversion,
        click=context.parts["clicks"],
        campaign=context.campaign,
        offer=context.parts["offers"],
        network=context.parts["affiliate_networks"],
        source=context.parts["traffic_sources"],
    )


def _load_contexts(conn: Connection, conversion_ids: set[int]) -> dict[int, _Context]:
    ordered = sorted(conversion_ids)
    found: dict[int, dict[str, dict[str, Any] | None]] = {}
    for start in range(0, len(ordered), _IDS_PER_QUERY):
        chunk = ordered[start : start + _IDS_PER_QUERY]
        for row in conn.execute(_CONTEXT, {"conversion_ids": chunk}):
            parts = _split(row)
            found[_present(parts["conversions"])["id"]] = parts
    campaign_ids = sorted({_present(parts["campaigns"])["id"] for parts in found.values()})
    postbacks: dict[int, list[_Target]] = {}
    for start in range(0, len(campaign_ids), _IDS_PER_QUERY):
        chunk = campaign_ids[start : start + _IDS_PER_QUERY]
        for pb in conn.execute(_POSTBACKS, {"campaign_ids": chunk}):
            postbacks.setdefault(pb.campaign_id, []).append(
                _Target(
                    kind=TargetKind.CAMPAIGN_POSTBACK,
                    id=pb.id,
                    url=pb.url,
                    method=pb.method,
                    body=pb.body,
                    headers=dict(pb.headers or {}),
                    statuses=list(pb.statuses or ()),
                    must_contain=pb.response_must_contain,
                    enabled=bool(pb.enabled),
                )
            )
    contexts: dict[int, _Context] = {}
    for conversion_id, parts in found.items():
        campaign, source = _present(parts["campaigns"]), parts["traffic_sources"]
        targets: list[_Target] = []
        if source is not None and source["postback_url"]:
            targets.append(
                _Target(
                    kind=TargetKind.TRAFFIC_SOURCE,
                    id=source["id"],
                    url=source["postback_url"],
                    method=source["postback_method"],
                    body=source["postback_body"],
                    headers=dict(source["postback_headers"] or {}),
                    statuses=list(source["postback_statuses"] or ()),
                    must_contain=source["response_must_contain"],
                    enabled=bool(source["postback_enabled"]),
                )
            )
        targets.extend(postbacks.get(campaign["id"], ()))
        contexts[conversion_id] = _Context(
            conversion=_present(parts["conversions"]),
            campaign=campaign,
            parts=parts,
            targets=targets,
        )
    return contexts


def _present(part: dict[str, Any] | None) -> dict[str, Any]:
    assert part is not None  # conversions and campaigns are inner-joined: always present
    return part


def _split(row: Sequence[Any]) -> dict[str, dict[str, Any] | None]:
    """Per-table dicts from a `_CONTEXT` row; None for a table the outer join missed."""
    parts: dict[str, dict[str, Any]] = {name: {} for name in _TABLES}
    for (table, column), value in zip(_CONTEXT_COLUMNS, row, strict=True):
        parts[table][column] = value
    return {
        name: (cols if cols.get("id", cols.get("subid")) is not None else None)
        for name, cols in parts.items()
    }


def build_macro_values(
    *,
    conversion: Mapping[str, Any],
    click: Mapping[str, Any] | None,
    campaign: Mapping[str, Any],
    offer: Mapping[str, Any] | None,
    network: Mapping[str, Any] | None,
    source: Mapping[str, Any] | None,
) -> dict[str, MacroValue]:
    """Every click, conversion and entity macro of SPEC §4, keyed by lower-case name."""
    values: dict[str, MacroValue] = {}
    if click is not None:
        # Custom parameters first, so that a custom name can never shadow a built-in macro.
        extra = click.get("extra") or {}
        for name, value in extra.items():
            if isinstance(value, str | int) or value is None:
                values[str(name).lower()] = value
        for name in CLICK_ID_PARAMS:  # known even when absent: no "unknown macro" warning
            values.setdefault(name, None)
        for name in _CLICK_TEXT_FIELDS:
            values[name] = click.get(name)
        values["cost"] = click.get("cost")
        values["date"] = click.get("created_at")
        # A custom `fbc` parameter (the landing page's _fbc cookie) stands when there is no fbclid.
        fbc = meta_click_id(extra.get("fbclid"), click.get("created_at"))
        values["fbc"] = fbc or values.get("fbc")
    values["subid"] = conversion["subid"]
    payout: Decimal = conversion["payout"]
    conversion_cost: Decimal | None = conversion.get("cost")
    cost_for_profit = conversion_cost if conversion_cost is not None else values.get("cost")
    values.update(
        status=conversion["type"],
        original_status=conversion["original_status"],
        tid=conversion["tid"],
        payout=payout,
        conversion_cost=conversion_cost,
        profit=payout - (cost_for_profit if isinstance(cost_for_profit, Decimal) else 0),
        currency=conversion["currency"],
        conversion_time=conversion["converted_at"],
        conversion_id=conversion["id"],
        campaign_id=campaign["id"],
        campaign_name=campaign["name"],
        offer_id=offer["id"] if offer else None,
        offer_name=offer["name"] if offer else None,
        ts_id=source["id"] if source else None,
        traffic_source_name=source["name"] if source else None,
        affiliate_network_name=network["name"] if network else None,
    )
    return values


def _render_target(
    target: _Target, values: Mapping[str, MacroValue], *, conversion_id: int, now: datetime
) -> outbox.NewDelivery:
    method = (target.method or "GET").upper()
    # Seeded by the delivery's identity: {random}/{sample} render the same on every re-queue,
    # so the dedup key still recognises the request.
    seed = f"{target.kind}:{target.id}:{conversion_id}"
    url = render(target.url, values, now=now, rng=random.Random(seed))
    warnings = dict.fromkeys(url.unknown)
    body: str | None = None
    content_type: str | None = None
    final_url = url.text
    if method == "POST":
        if target.body:
            rng = random.Random(seed)
            rendered_body = render_json(target.body, values, now=now, rng=rng) or render(
                target.body, values, now=now, rng=rng, encode=escape_json
            )
            warnings.update(dict.fromkeys(rendered_body.unknown))
            body, content_type = rendered_body.text, JSON
        else:
            final_url, _, query = url.text.partition("?")
            query = query.partition("#")[0]
            body, content_type = query, FORM
    headers: dict[str, str] = {}
    for name, template in target.headers.items():
        header = render_header(template, values, now=now, rng=random.Random(seed))
        warnings.update(dict.fromkeys(header.unknown))
        headers[name] = header.text
    return outbox.NewDelivery(
        conversion_id=conversion_id,
        target_kind=target.kind,
        target_id=target.id,
        method=method,
        url=final_url,
        body=body,
        content_type=content_type,
        headers=headers,
        response_must_contain=target.must_contain or None,
        dedup_key=dedup_key(
            target.kind, target.id, conversion_id, method, final_url, body, headers
        ),
        warnings=tuple(warnings),
        enabled=target.enabled,
    )


def meta_click_id(fbclid: object, clicked_at: object) -> str | None:
    """Meta's `fbc` for a click that came with an `fbclid`: `fb.1.<click time, ms>.<fbclid>`
    (the _fbc cookie's format; 1 = the subdomain index Meta documents for server events)."""
    if not isinstance(fbclid, str) or not fbclid or not isinstance(clicked_at, datetime):
        return None
    return f"fb.1.{int(clicked_at.timestamp() * 1000)}.{fbclid}"


def dedup_key(
    kind: TargetKind,
    target_id: int,
    conversion_id: int,
    method: str,
    url: str,
    body: str | None,
    headers: Mapping[str, str] | None = None,
) -> str:
    """sha256 of the target, the conversion and the rendered request (headers only when there
    are any, so that the keys of deliveries queued before headers existed still match)."""
    parts = [str(kind), str(target_id), str(conversion_id), method, url, body or ""]
    if headers:
        parts.append(json.dumps(dict(headers), sort_keys=True))
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def _wants(statuses: list[str], conversion_type: str) -> bool:
    return not statuses or conversion_type.lower() in {s.strip().lower() for s in statuses}
