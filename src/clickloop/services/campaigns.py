"""The campaign work screen: the list with each campaign's figures for a period (one report
builder query, grouped by campaign), its links on the chosen tracking domain, clone, archive
and restore, pause and resume of several at once, and the health of its S2S targets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine

from clickloop.errors import InvalidInput, NotFound
from clickloop.services import entities
from clickloop.services.report_builder import ReportResult, run_report
from clickloop.services.report_metrics import Value, metric
from clickloop.services.report_query import (
    DEFAULT_PRESET,
    MAX_LIMIT,
    DimensionFilter,
    ReportQuery,
    preset_range,
    zone_named,
)
from clickloop.storage import tables as t
from clickloop.storage.db import reader_engine

PERIODS = ("today", "yesterday", "last_7_days", "last_30_days", "this_month", "custom")
DEFAULT_PERIOD = DEFAULT_PRESET
# The list's figures, in the order of its columns after the name.
FIGURES = (
    "clicks",
    "unique_clicks",
    "leads",
    "sales",
    "pending_revenue",
    "revenue",
    "cost",
    "projected_profit",
    "projected_roi",
    "profit",
    "roi",
    "cr",
    "epc",
    "cpa",
)
WORD_SORTS = ("name", "status", "traffic_source")  # A to Z by default; figures most first
SORTS = (*WORD_SORTS, *FIGURES)
STATES = ("active", "paused", "archived")
STATUSES = ("active", "paused")
# Health of an S2S target: its latest deliveries, newest first (an index range, never a scan).
RECENT_DELIVERIES = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Period:
    name: str  # one of PERIODS
    date_from: date
    date_to: date  # included
    timezone: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignRow:
    id: int
    name: str
    alias: str
    status: str
    archived: bool
    traffic_source_id: int | None
    traffic_source: str  # its name, "" for none
    networks: tuple[str, ...]  # of its offers
    link: str
    figures: dict[str, Value]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "alias": self.alias,
            "status": self.status,
            "archived": self.archived,
            "traffic_source_id": self.traffic_source_id,
            "traffic_source": self.traffic_source,
            "networks": list(self.networks),
            "link": self.link,
            "figures": {name: _json(value) for name, value in self.figures.items()},
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Board:
    period: Period
    currency: str
    rows: list[CampaignRow]
    totals: dict[str, Value]
    source: str  # the report path that answered
    campaigns: int = 0  # before the filters
    sort: str = "clicks"
    descending: bool = True
    filters: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.period.name,
            "from": self.period.date_from,
            "to": self.period.date_to,
            "timezone": self.period.timezone,
            "currency": self.currency,
            "sort": self.sort,
            "order": "desc" if self.descending else "asc",
            "items": [row.as_dict() for row in self.rows],
            "totals": {name: _json(value) for name, value in self.totals.items()},
            "source": self.source,
        }


def resolve_period(
    name: str | None,
    *,
    today: date,
    timezone: str,
    date_from: date | None = None,
    date_to: date | None = None,
) -> Period:
    """The local dates a period names on `today`; `custom` takes both dates (and dates alone
    mean custom). InvalidInput names the parameter at fault."""
    if name is None:
        name = "custom" if date_from or date_to else DEFAULT_PERIOD
    if name not in PERIODS:
        raise InvalidInput("period", f"one of {', '.join(PERIODS)}, not {name[:40]!r}")
    if name != "custom":
        if date_from or date_to:
            raise InvalidInput("from", f"only with period=custom (not {name})")
        first, last = preset_range(name, today)
        return Period(name=name, date_from=first, date_to=last, timezone=timezone)
    if date_from is None or date_to is None:
        raise InvalidInput("from" if date_from is None else "to", "required with period=custom")
    if date_to < date_from:
        raise InvalidInput("to", "on or after from")
    return Period(name=name, date_from=date_from, date_to=date_to, timezone=timezone)


def campaign_board(
    engine: Engine,
    *,
    default_base: str,
    now: datetime,
    period: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    search: str = "",
    traffic_source_id: int | None = None,
    network_id: int | None = None,
    state: str | None = None,
    sort: str = "clicks",
    descending: bool = True,
    statement_timeout: float = 0,
) -> Board:
    """The campaign list: every campaign that passes the filters (archived ones only with
    state=archived), each with its figures over the period in the settings' time zone (zero
    without traffic), sorted by any column, and the totals of those shown."""
    if sort not in SORTS:
        raise InvalidInput("sort", f"one of {', '.join(SORTS)}, not {sort[:40]!r}")
    if state is not None and state not in STATES:
        raise InvalidInput("state", f"one of {', '.join(STATES)}, not {state[:40]!r}")
    settings = entities.get_settings(engine)
    timezone = str(settings["timezone"])
    today = now.astimezone(zone_named(timezone, "timezone")).date()
    span = resolve_period(
        period, today=today, timezone=timezone, date_from=date_from, date_to=date_to
    )
    with reader_engine(engine).connect() as conn:
        every = _campaigns(conn)
        sources = _names(conn, t.traffic_sources)
        networks = _networks_by_campaign(conn)
    wanted = search.strip().casefold()
    chosen = [
        c
        for c in every
        if _state_of(c) == state or (state is None and c["archived_at"] is None)
        if traffic_source_id is None or c["traffic_source_id"] == traffic_source_id
        if network_id is None or network_id in networks.get(c["id"], {})
        if not wanted or wanted in c["name"].casefold() or wanted in c["alias"].casefold()
    ]
    query = ReportQuery(
        date_from=span.date_from,
        date_to=span.date_to,
        timezone=timezone,
        grouping=("campaign",),
        metrics=FIGURES,
        filters=(
            DimensionFilter(
                name="campaign", operator="in_list", values=tuple(str(c["id"]) for c in chosen)
            ),
        ),
        limit=MAX_LIMIT,
    )
    result = (
        run_report(engine, query, settings=settings, statement_timeout=statement_timeout)
        if chosen
        else None
    )
    by_id = {row.dimensions["campaign"]: row for row in result.rows} if result else {}
    zero = _zero_figures()
    links = {**settings, "default_base": default_base}
    rows = [
        CampaignRow(
            id=c["id"],
            name=c["name"],
            alias=c["alias"],
            status=c["status"],
            archived=c["archived_at"] is not None,
            traffic_source_id=c["traffic_source_id"],
            traffic_source=sources.get(c["traffic_source_id"], ("", []))[0],
            networks=tuple(sorted(networks.get(c["id"], {}).values())),
            link=campaign_link(
                link_base(links, c), c["alias"], sources.get(c["traffic_source_id"], ("", []))[1]
            ),
            figures=dict(by_id[str(c["id"])].values) if str(c["id"]) in by_id else dict(zero),
        )
        for c in chosen
    ]
    rows.sort(key=lambda row: row.name.casefold())
    rows.sort(key=_sort_key(sort, descending), reverse=descending)
    totals = dict(result.totals.values) if result and result.totals else dict(zero)
    return Board(
        period=span,
        currency=str(settings["currency"]),
        rows=rows,
        totals=totals,
        source=result.source if result else "none",
        campaigns=len(every),
        sort=sort,
        descending=descending,
        filters={
            "search": search.strip(),
            "traffic_source_id": traffic_source_id,
            "network_id": network_id,
            "state": state,
        },
    )


def campaign_days(
    engine: Engine,
    campaign_id: int,
    *,
    now: datetime,
    period: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    statement_timeout: float = 0,
) -> tuple[Period, ReportResult]:
    """A campaign's figures by day over a period of the list's (days without traffic left
    out), in the settings' time zone: the campaign page's report."""
    settings = entities.get_settings(engine)
    timezone = str(settings["timezone"])
    today = now.astimezone(zone_named(timezone, "timezone")).date()
    span = resolve_period(
        period, today=today, timezone=timezone, date_from=date_from, date_to=date_to
    )
    query = ReportQuery(
        date_from=span.date_from,
        date_to=span.date_to,
        timezone=timezone,
        grouping=("day",),
        metrics=FIGURES,
        filters=(DimensionFilter(name="campaign", operator="equals", values=(str(campaign_id),)),),
        limit=MAX_LIMIT,
    )
    result = run_report(engine, query, settings=settings, statement_timeout=statement_timeout)
    return span, result


def _sort_key(sort: str, descending: bool) -> Any:
    """A key for list.sort(reverse=descending): empty figures (a ratio without denominator)
    last either way."""

    def key(row: CampaignRow) -> tuple[int, Any]:
        if sort == "name":
            return (1, row.name.casefold())
        if sort == "status":
            return (1, "archived" if row.archived else row.status)
        if sort == "traffic_source":
            return (1 if row.traffic_source else 0, row.traffic_source.casefold())
        value = row.figures.get(sort)
        present = value is not None
        return (
            (1 if present else 0, value if present else 0)
            if descending
            else (
                0 if present else 1,
                value if present else 0,
            )
        )

    return key


def _state_of(campaign: Mapping[str, Any]) -> str:
    return "archived" if campaign["archived_at"] is not None else str(campaign["status"])


def _zero_figures() -> dict[str, Value]:
    """The figures of a campaign without traffic in the period."""
    return {name: metric(name).value(_Zeros()) for name in FIGURES}


class _Zeros(dict[str, int]):
    def __missing__(self, key: str) -> int:
        return 0


def _campaigns(conn: Connection) -> list[dict[str, Any]]:
    return [
        dict(row._mapping) for row in conn.execute(select(t.campaigns).order_by(t.campaigns.c.id))
    ]


def _names(conn: Connection, table: Any) -> dict[int, tuple[str, list[dict[str, str]]]]:
    """Traffic sources by id: (name, parameter rows)."""
    return {
        row.id: (row.name, list(row.parameters or []))
        for row in conn.execute(select(table.c.id, table.c.name, table.c.parameters))
    }


def _networks_by_campaign(conn: Connection) -> dict[int, dict[int, str]]:
    """The affiliate networks of each campaign's offers: {campaign id: {network id: name}}."""
    links, offers, networks = t.campaign_offers, t.offers, t.affiliate_networks
    rows = conn.execute(
        select(links.c.campaign_id, networks.c.id, networks.c.name)
        .select_from(links.join(offers, offers.c.id == links.c.offer_id))
        .join(networks, networks.c.id == offers.c.affiliate_network_id)
    )
    found: dict[int, dict[int, str]] = {}
    for campaign_id, network_id, name in rows:
        found.setdefault(campaign_id, {})[network_id] = name
    return found


# --- links --------------------------------------------------------------------------------


def campaign_link(base: str, alias: str, parameters: Iterable[Mapping[str, str]]) -> str:
    """The link to give the traffic source: its macros stay raw for the source to fill."""
    query = "&".join(f"{quote(p['param'], safe='')}={p.get('macro', '')}" for p in parameters)
    return f"{base.rstrip('/')}/{alias}" + (f"?{query}" if query else "")


def link_base(settings: Mapping[str, Any], campaign: Mapping[str, Any]) -> str:
    """The base URL of a campaign's link: its own tracking domain, else the settings' first,
    else `settings["default_base"]` (the server's public URL)."""
    domains = settings.get("tracking_domains") or []
    chosen = campaign.get("tracking_domain") or (domains[0] if domains else None)
    return str(chosen or settings["default_base"])


def link_of(engine: Engine, campaign: Mapping[str, Any], *, default_base: str) -> str:
    """One campaign's link with its source's parameters, on its tracking domain."""
    settings = entities.get_settings(engine) | {"default_base": default_base}
    parameters: list[dict[str, str]] = []
    if campaign.get("traffic_source_id") is not None:
        source = entities.get_entity(engine, "traffic_sources", campaign["traffic_source_id"])
        parameters = source["parameters"]
    return campaign_link(link_base(settings, campaign), campaign["alias"], parameters)


def links_by_id(engine: Engine, *, default_base: str) -> dict[int, str]:
    """Every campaign's link, on its tracking domain, by campaign id."""
    settings = entities.get_settings(engine) | {"default_base": default_base}
    with reader_engine(engine).connect() as conn:
        sources = _names(conn, t.traffic_sources)
        rows = _campaigns(conn)
    return {
        row["id"]: campaign_link(
            link_base(settings, row),
            row["alias"],
            sources.get(row["traffic_source_id"], ("", []))[1],
        )
        for row in rows
    }


# --- changes ------------------------------------------------------------------------------


def set_status(engine: Engine, campaign_ids: Sequence[int], status: str) -> int:
    """Pause or resume campaigns at once (all or none); how many changed. An archived one is
    refused: restore it first."""
    if status not in STATUSES:
        raise InvalidInput("status", "active or paused")
    ids = _ids(campaign_ids)
    with engine.begin() as conn:
        found = _found(conn, ids)
        archived = [row.name for row in found if row.archived_at is not None]
        if archived:
            raise InvalidInput("status", f"{archived[0]!r} is archived: restore it first")
        changed = sum(1 for row in found if row.status != status)
        if changed:
            k = t.campaigns.c
            conn.execute(update(t.campaigns).where(k.id.in_(ids)).values(status=status))
            entities.bump_config_version(conn)
    return changed


def archive(engine: Engine, campaign_ids: Sequence[int], *, now: datetime) -> int:
    """Hide campaigns from the list and pause them: their links answer 404, their clicks,
    conversions and reports stay. How many were not archived before."""
    ids = _ids(campaign_ids)
    with engine.begin() as conn:
        found = _found(conn, ids)
        fresh = [row.id for row in found if row.archived_at is None]
        if fresh:
            conn.execute(
                update(t.campaigns)
                .where(t.campaigns.c.id.in_(fresh))
                .values(archived_at=now, status="paused")
            )
            entities.bump_config_version(conn)
    return len(fresh)


def restore(engine: Engine, campaign_ids: Sequence[int]) -> int:
    """Bring archived campaigns back to the list, paused (resume one to make its link count
    clicks again). How many were archived."""
    ids = _ids(campaign_ids)
    with engine.begin() as conn:
        found = _found(conn, ids)
        archived = [row.id for row in found if row.archived_at is not None]
        if archived:
            conn.execute(
                update(t.campaigns)
                .where(t.campaigns.c.id.in_(archived))
                .values(archived_at=None, status="paused")
            )
            entities.bump_config_version(conn)
    return len(archived)


def clone(
    engine: Engine,
    campaign_id: int,
    *,
    now: datetime,
    name: str | None = None,
    alias: str | None = None,
) -> int:
    """A copy of a campaign with its offers and weights, its enabled S2S postbacks, source,
    cost model and tracking domain, under a new name and alias (given, or "<name> (copy)" and
    "<alias>-copy", numbered when taken); active, not archived. The new campaign's id."""
    with engine.begin() as conn:
        row = conn.execute(select(t.campaigns).where(t.campaigns.c.id == campaign_id)).first()
        if row is None:
            raise NotFound("campaign", campaign_id)
        offers = [
            (r.offer_id, r.weight)
            for r in conn.execute(
                select(t.campaign_offers)
                .where(t.campaign_offers.c.campaign_id == campaign_id)
                .order_by(t.campaign_offers.c.offer_id)
            )
        ]
        p = t.campaign_postbacks.c
        postbacks = [
            {name: r._mapping[name] for name in entities.POSTBACK_FIELDS}
            for r in conn.execute(
                select(t.campaign_postbacks)
                .where(p.campaign_id == campaign_id, p.enabled.is_(True))
                .order_by(p.id)
            )
        ]
        return entities.add_campaign(
            conn,
            now=now,
            offers=offers,
            postbacks=postbacks,
            name=name if name is not None else _free(conn, "name", f"{row.name} (copy)", " "),
            alias=alias if alias is not None else _free(conn, "alias", _copy_alias(row.alias)),
            traffic_source_id=row.traffic_source_id,
            cost_model=row.cost_model,
            cost_value=row.cost_value,
            status="active",
            tracking_domain=row.tracking_domain,
        )


def _copy_alias(alias: str) -> str:
    return f"{alias[:59]}-copy"


def _free(conn: Connection, column: str, wanted: str, joint: str = "-") -> str:
    """`wanted`, or `wanted<joint>2`, 3… : the first no campaign has."""
    c = t.campaigns.c[column]
    limit = 200 if column == "name" else 64
    taken = set(
        conn.execute(select(c).where(c.like(f"{_escaped(wanted[:limit])}%", escape="\\")))
        .scalars()
        .all()
    )
    candidate, number = wanted[:limit], 1
    while candidate in taken:
        number += 1
        suffix = f"{joint}{number}"
        candidate = wanted[: limit - len(suffix)] + suffix
    return candidate


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _ids(campaign_ids: Sequence[int]) -> list[int]:
    ids = list(dict.fromkeys(campaign_ids))
    if not ids:
        raise InvalidInput("ids", "choose at least one campaign")
    if any(isinstance(i, bool) or not isinstance(i, int) or not 0 < i < 2**31 for i in ids):
        raise InvalidInput("ids", "campaign ids: whole numbers from 1")
    return ids


def _found(conn: Connection, ids: Sequence[int]) -> list[Any]:
    k = t.campaigns.c
    found = conn.execute(select(k.id, k.name, k.status, k.archived_at).where(k.id.in_(ids))).all()
    missing = sorted(set(ids) - {row.id for row in found})
    if missing:
        raise NotFound("campaign", missing[0])
    return list(found)


# --- S2S health ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetHealth:
    kind: str  # traffic_source | campaign_postback
    id: int
    url: str  # as stored: mask it where it is shown
    method: str
    statuses: list[str]
    enabled: bool
    disabled_reason: str | None
    last_success_at: datetime | None
    failing_since: datetime | None
    last: dict[str, Any] | None  # the latest delivery: id, state, attempts, created_at, error
    recent: int  # deliveries looked at (at most RECENT_DELIVERIES)
    failed: int  # of those, given up
    waiting: int  # of those, queued (new or retrying)

    @property
    def health(self) -> str:
        """ok | failing | disabled | idle (nothing sent yet)"""
        if not self.enabled:
            return "disabled"
        if self.failing_since is not None or (self.last and self.last["state"] == "failed"):
            return "failing"
        return "ok" if self.last is not None else "idle"


def target_health(engine: Engine, campaign_id: int) -> list[TargetHealth]:
    """The campaign's S2S targets, its traffic source's first (shared with the source's other
    campaigns), then its own enabled postbacks, each with its latest deliveries' states."""
    with reader_engine(engine).connect() as conn:
        campaign = conn.execute(
            select(t.campaigns.c.traffic_source_id).where(t.campaigns.c.id == campaign_id)
        ).first()
        if campaign is None:
            raise NotFound("campaign", campaign_id)
        targets: list[TargetHealth] = []
        if campaign.traffic_source_id is not None:
            s = t.traffic_sources.c
            source = conn.execute(
                select(t.traffic_sources).where(s.id == campaign.traffic_source_id)
            ).one()
            if source.postback_url:
                targets.append(
                    _health(
                        conn,
                        "traffic_source",
                        source.id,
                        url=source.postback_url,
                        method=source.postback_method,
                        statuses=source.postback_statuses,
                        enabled=source.postback_enabled,
                        disabled_reason=source.postback_disabled_reason,
                        last_success_at=source.last_success_at,
                        failing_since=source.failing_since,
                    )
                )
        p = t.campaign_postbacks.c
        for row in conn.execute(
            select(t.campaign_postbacks)
            .where(
                p.campaign_id == campaign_id,
                p.disabled_reason.is_distinct_from(entities.REMOVED_FROM_CAMPAIGN),
            )
            .order_by(p.id)
        ):
            targets.append(
                _health(
                    conn,
                    "campaign_postback",
                    row.id,
                    url=row.url,
                    method=row.method,
                    statuses=row.statuses,
                    enabled=row.enabled,
                    disabled_reason=row.disabled_reason,
                    last_success_at=row.last_success_at,
                    failing_since=row.failing_since,
                )
            )
    return targets


def _health(conn: Connection, kind: str, target_id: int, **fields: Any) -> TargetHealth:
    d = t.deliveries.c
    recent = conn.execute(
        select(d.id, d.state, d.attempts, d.created_at, d.last_error)
        .where(d.target_kind == kind, d.target_id == target_id)
        .order_by(d.id.desc())
        .limit(RECENT_DELIVERIES)
    ).all()
    return TargetHealth(
        kind=kind,
        id=target_id,
        last=dict(recent[0]._mapping) if recent else None,
        recent=len(recent),
        failed=sum(1 for row in recent if row.state == "failed"),
        waiting=sum(1 for row in recent if row.state == "queued"),
        **fields,
    )


def _json(value: Value) -> Any:
    return str(value) if isinstance(value, Decimal) else value
