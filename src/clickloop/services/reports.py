"""The one-level report (GET /api/v1/reports, the dashboard, the campaign list, the report
page and its CSV): clicks, conversions and money grouped by day, campaign, source, offer,
country or sub_id_N over local dates, as a shorthand over the report builder
(`report_builder.run_report`). Definitions are in docs/reports.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from clickloop.errors import InvalidInput
from clickloop.services.report_builder import ResultRow, run_report
from clickloop.services.report_metrics import NOT_CONVERSIONS, NOT_REVENUE
from clickloop.services.report_query import (
    FIRST_DAY,
    LAST_DAY,
    MAX_DAYS,
    MAX_LIMIT,
    DimensionFilter,
    ReportQuery,
    known_types,
    zone_named,
)
from clickloop.services.report_sql import ClickCostSql, click_cost_sql
from clickloop.storage import tables as t
from clickloop.storage.db import reader_engine

__all__ = ["GROUPS", "ClickCostSql", "Report", "ReportRow", "build_report", "click_cost_sql"]

GROUPS = (
    "day",
    "campaign",
    "traffic_source",
    "offer",
    "country",
    *(f"sub_id_{n}" for n in range(1, t.SUB_ID_COUNT + 1)),
)


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
    source: str = "raw"  # which path answered: "raw" or "aggregates:<cube>"
    total_rows: int = 0
    truncated: bool = False  # more than MAX_LIMIT groups: the ones with the fewest clicks cut


def build_report(
    engine: Engine,
    *,
    group_by: str,
    date_from: date,
    date_to: date,
    timezone: str,
    currency: str,
    campaign_id: int | None = None,
    statement_timeout: float = 0,
) -> Report:
    """The one-level report of GET /api/v1/reports, the dashboard and the campaign list, run by
    the report builder: conversions by conversion time, every day of a day report listed."""
    if group_by not in GROUPS:
        raise InvalidInput("group_by", f"one of {', '.join(GROUPS)}")
    for name, day in (("from", date_from), ("to", date_to)):
        if not FIRST_DAY <= day <= LAST_DAY:
            raise InvalidInput(name, f"a date from {FIRST_DAY} to {LAST_DAY}")
    if date_to < date_from or (date_to - date_from).days > MAX_DAYS:
        raise InvalidInput("date_to", f"on or after date_from, at most {MAX_DAYS} days later")
    zone_named(timezone, "timezone")
    with reader_engine(engine).connect() as conn:
        types = sorted(known_types(conn.execute(select(t.conversion_types.c.name)).scalars()))
    query = ReportQuery(
        date_from=date_from,
        date_to=date_to,
        timezone=timezone,
        grouping=(group_by,),
        metrics=(
            "clicks",
            "cost",
            *(f"conversions:{k}" for k in types),
            *(f"revenue:{k}" for k in types),
        ),
        filters=()
        if campaign_id is None
        else (DimensionFilter(name="campaign", operator="equals", values=(str(campaign_id),)),),
        limit=MAX_LIMIT,
    )
    result = run_report(
        engine, query, settings={"currency": currency}, statement_timeout=statement_timeout
    )
    rows = {
        row.dimensions[group_by]: _legacy_row(
            row, row.dimensions[group_by], row.labels[group_by], types
        )
        for row in result.rows
    }
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
    assert result.totals is not None
    return Report(
        group_by=group_by,
        date_from=date_from,
        date_to=date_to,
        timezone=timezone,
        currency=currency,
        rows=ordered,
        totals=_legacy_row(result.totals, "total", "Total", types),
        source=result.source,
        total_rows=result.total_rows,
        truncated=result.truncated,
    )


def _legacy_row(row: ResultRow, key: str, label: str, types: Sequence[str]) -> ReportRow:
    values = row.values
    counted = [k for k in types if values[f"conversions:{k}"]]
    return ReportRow(
        key=key,
        label=label,
        clicks=int(values["clicks"] or 0),
        cost=Decimal(values["cost"] or 0),
        conversions={k: int(values[f"conversions:{k}"] or 0) for k in counted},
        revenue_by_type={k: Decimal(values[f"revenue:{k}"] or 0) for k in counted},
    )


def _ratio(numerator: Decimal, denominator: Decimal, places: str = "0.01") -> Decimal | None:
    if not denominator:
        return None
    return (numerator / denominator).quantize(Decimal(places))


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
