"""Reports: clicks, conversions and money grouped by day, campaign, source, offer, country or
sub_id_N, over a date range in the report time zone. Definitions are in docs/reports.md.

Clicks are counted by click time, conversions by conversion time. Day grouping is done on
15-minute UTC buckets in SQL (every real UTC offset is a multiple of 15 minutes) and folded
into local days here, which is portable across SQLite and PostgreSQL and exact across DST.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import BigInteger, ColumnElement, FromClause, cast, func, select
from sqlalchemy.engine import Connection, Engine

from clickloop.errors import InvalidInput
from clickloop.storage import tables as t
from clickloop.storage.db import reader_engine

GROUPS = (
    "day",
    "campaign",
    "traffic_source",
    "offer",
    "country",
    *(f"sub_id_{n}" for n in range(1, t.SUB_ID_COUNT + 1)),
)
# Revenue that is not (yet) money: held leads, rejections and trash.
NOT_REVENUE = frozenset({"lead", "rejected", "trash"})
# Conversions that do not count for the conversion rate.
NOT_CONVERSIONS = frozenset({"trash", "rebill"})
BUCKET_SECONDS = 900
MAX_DAYS = 731


@dataclass(slots=True)
class ReportRow:
    key: str
    label: str
    clicks: int = 0
    cost: Decimal = Decimal(0)  # of the clicks, by click time: see click_cost_sql
    conversions: dict[str, int] = field(default_factory=dict)
    revenue_by_type: dict[str, Decimal] = field(default_factory=dict)

    @property
    def revenue(self) -> Decimal:
        return sum((v for k, v in self.revenue_by_type.items() if k not in NOT_REVENUE), Decimal(0))

    @property
    def profit(self) -> Decimal:
        return self.revenue - self.cost

    @property
    def conversion_count(self) -> int:
        return sum(v for k, v in self.conversions.items() if k not in NOT_CONVERSIONS)

    @property
    def roi(self) -> Decimal | None:
        return _ratio(self.profit * 100, self.cost)

    @property
    def cr(self) -> Decimal | None:
        return _ratio(Decimal(self.conversion_count * 100), Decimal(self.clicks))

    @property
    def epc(self) -> Decimal | None:
        return _ratio(self.revenue, Decimal(self.clicks), places="0.0001")

    def add(self, other: ReportRow) -> None:
        self.clicks += other.clicks
        self.cost += other.cost
        for kind, count in other.conversions.items():
            self.conversions[kind] = self.conversions.get(kind, 0) + count
        for kind, amount in other.revenue_by_type.items():
            self.revenue_by_type[kind] = self.revenue_by_type.get(kind, Decimal(0)) + amount

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "clicks": self.clicks,
            "conversions": self.conversion_count,
            "conversions_by_type": dict(self.conversions),
            "revenue_by_type": {k: str(v) for k, v in self.revenue_by_type.items()},
            "revenue": str(self.revenue),
            "cost": str(self.cost),
            "profit": str(self.profit),
            "roi": _text(self.roi),
            "cr": _text(self.cr),
            "epc": _text(self.epc),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    group_by: str
    date_from: date
    date_to: date  # inclusive
    timezone: str
    currency: str
    rows: list[ReportRow]
    totals: ReportRow


def build_report(
    engine: Engine,
    *,
    group_by: str,
    date_from: date,
    date_to: date,
    timezone: str,
    currency: str,
    campaign_id: int | None = None,
) -> Report:
    """Aggregate clicks and conversions between two local dates (both included)."""
    if group_by not in GROUPS:
        raise InvalidInput("group_by", f"one of {', '.join(GROUPS)}")
    if date_to < date_from or (date_to - date_from).days > MAX_DAYS:
        raise InvalidInput("date_to", f"on or after date_from, at most {MAX_DAYS} days later")
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput("timezone", f"unknown time zone: {timezone}") from exc
    since = datetime.combine(date_from, time(), zone).astimezone(UTC)
    until = datetime.combine(date_to + timedelta(days=1), time(), zone).astimezone(UTC)
    rows: dict[str, ReportRow] = {}
    with reader_engine(engine).connect() as conn:
        labels = _labels(conn, group_by)

        def row_for(raw_key: Any) -> ReportRow:
            key = _key(raw_key, group_by, zone)
            if key not in rows:
                rows[key] = ReportRow(key=key, label=labels.get(key, key or "(none)"))
            return rows[key]

        for raw_key, clicks, cost in conn.execute(
            _click_query(conn, group_by, since, until, campaign_id)
        ):
            row = row_for(raw_key)
            row.clicks += int(clicks)
            row.cost += cost or Decimal(0)
        for raw_key, kind, count, payout in conn.execute(
            _conversion_query(conn, group_by, since, until, campaign_id)
        ):
            row = row_for(raw_key)
            row.conversions[kind] = row.conversions.get(kind, 0) + int(count)
            row.revenue_by_type[kind] = row.revenue_by_type.get(kind, Decimal(0)) + payout
    if group_by == "day":
        day = date_from
        while day <= date_to:
            rows.setdefault(day.isoformat(), ReportRow(key=day.isoformat(), label=day.isoformat()))
            day += timedelta(days=1)
    ordered = (
        sorted(rows.values(), key=lambda r: r.key)
        if group_by == "day"
        else sorted(rows.values(), key=lambda r: (-r.clicks, r.label))
    )
    totals = ReportRow(key="total", label="Total")
    for row in ordered:
        totals.add(row)
    return Report(
        group_by=group_by,
        date_from=date_from,
        date_to=date_to,
        timezone=timezone,
        currency=currency,
        rows=ordered,
        totals=totals,
    )


@dataclass(frozen=True, slots=True)
class ClickCostSql:
    """`domain.costs.click_cost` in SQL: select `amount` from `source` for each click's cost."""

    source: FromClause  # clicks, left-joined to the sum of their conversions' costs
    amount: ColumnElement[Any]


def click_cost_sql() -> ClickCostSql:
    """The SQL form of a click's one cost: its conversions' summed costs when one carries a cost
    (SUM skips NULLs), else the cost recorded with the click. A join on the per-click sums, not a
    correlated subquery: PostgreSQL runs the subquery once per click, ten times slower."""
    v = t.conversions.c
    carried = (
        select(v.subid, func.sum(v.cost).label("cost"))
        .where(v.cost.is_not(None))
        .group_by(v.subid)
        .subquery("carried")
    )
    return ClickCostSql(
        source=t.clicks.outerjoin(carried, carried.c.subid == t.clicks.c.subid),
        amount=func.coalesce(carried.c.cost, t.clicks.c.cost),
    )


def _epoch_bucket(conn: Connection, column: Any) -> ColumnElement[Any]:
    if conn.dialect.name == "sqlite":
        seconds = cast(func.strftime("%s", column), BigInteger)
    else:
        seconds = cast(func.extract("epoch", column), BigInteger)
    return cast(func.floor(seconds / BUCKET_SECONDS), BigInteger)


def _click_key(conn: Connection, group_by: str) -> ColumnElement[Any]:
    c = t.clicks.c
    if group_by == "day":
        return _epoch_bucket(conn, c.created_at)
    if group_by in ("campaign", "traffic_source", "offer"):
        return c[f"{group_by}_id"]
    return c[group_by]


def _click_query(
    conn: Connection, group_by: str, since: datetime, until: datetime, campaign_id: int | None
) -> Any:
    c = t.clicks.c
    key = _click_key(conn, group_by).label("key")
    cost = click_cost_sql()
    query = (
        select(key, func.count(), func.sum(cost.amount))
        .select_from(cost.source)
        .where(c.created_at >= since, c.created_at < until)
        .group_by(key)
    )
    return query.where(c.campaign_id == campaign_id) if campaign_id is not None else query


def _conversion_query(
    conn: Connection, group_by: str, since: datetime, until: datetime, campaign_id: int | None
) -> Any:
    v = t.conversions.c
    needs_click = group_by == "country" or group_by.startswith("sub_id_")
    key: ColumnElement[Any]
    if group_by == "day":
        key = _epoch_bucket(conn, v.converted_at)
    elif group_by in ("campaign", "traffic_source", "offer"):
        key = v[f"{group_by}_id"]
    else:
        key = _click_key(conn, group_by)
    key = key.label("key")
    source = t.conversions.join(t.clicks, t.clicks.c.subid == v.subid) if needs_click else None
    query = select(key, v.type, func.count(), func.sum(v.payout))
    if source is not None:
        query = query.select_from(source)
    query = query.where(v.converted_at >= since, v.converted_at < until).group_by(key, v.type)
    return query.where(v.campaign_id == campaign_id) if campaign_id is not None else query


def _key(raw: Any, group_by: str, zone: ZoneInfo) -> str:
    if raw is None:
        return ""
    if group_by == "day":
        moment = datetime.fromtimestamp(int(raw) * BUCKET_SECONDS, UTC).astimezone(zone)
        return moment.date().isoformat()
    return str(raw)


def _labels(conn: Connection, group_by: str) -> dict[str, str]:
    table = {
        "campaign": t.campaigns,
        "traffic_source": t.traffic_sources,
        "offer": t.offers,
    }.get(group_by)
    if table is None:
        return {}
    return {str(i): str(n) for i, n in conn.execute(select(table.c.id, table.c.name))}


def _ratio(numerator: Decimal, denominator: Decimal, places: str = "0.01") -> Decimal | None:
    if not denominator:
        return None
    return (numerator / denominator).quantize(Decimal(places))


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
