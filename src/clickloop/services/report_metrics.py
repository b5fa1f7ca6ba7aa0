"""Report metrics: each one's SQL (for sorting and filtering the grouped rows in the database)
and its exact value (Decimal, computed from the same integer sums for the rows shown).

Every metric is a formula over a few *base* sums of the facts: clicks, unique clicks, cost,
conversions, revenue and, per conversion type, its count (`n:<type>`) and payout (`m:<type>`).
Money bases are integer micro-units, as stored.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy import ColumnElement, Float, cast, func

from clickloop.services.report_query import TYPE_COUNT_METRICS, TYPED_METRIC

# Revenue that is not (yet) money: held leads, rejections and trash.
NOT_REVENUE = frozenset({"lead", "rejected", "trash"})
# Conversions that do not count for the conversion rate.
NOT_CONVERSIONS = frozenset({"trash", "rebill"})
MICROS = Decimal(1_000_000)

Value = int | Decimal | None
Bases = Mapping[str, int]
Columns = Mapping[str, ColumnElement[Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Metric:
    name: str
    kind: str  # count | money | ratio
    bases: tuple[str, ...]
    sql: Callable[[Columns], ColumnElement[Any]]  # money in micro-units, ratios as floats
    value: Callable[[Bases], Value]

    def threshold(self, bound: Decimal) -> int | float:
        """A metric filter's bound in the units of `sql`."""
        scaled = bound * MICROS if self.kind == "money" else bound
        return int(scaled) if scaled == scaled.to_integral_value() else float(scaled)


def money(micros: int) -> Decimal:
    return Decimal(micros).scaleb(-6)


def _base(name: str, kind: str) -> Metric:
    value: Callable[[Bases], Value] = (
        (lambda b: money(b[name])) if kind == "money" else (lambda b: b[name])
    )
    return Metric(name=name, kind=kind, bases=(name,), sql=lambda c: c[name], value=value)


def _ratio(
    name: str,
    numerator: tuple[str, ...],
    denominator: tuple[str, ...],
    *,
    scale: Decimal,
    places: str,
    minus: tuple[str, ...] = (),
) -> Metric:
    """(sum(numerator) - sum(minus)) * scale / sum(denominator) to `places` (half to even),
    None when the denominator is 0. Worked out in integers: exact, and a tenth of the time of
    Decimal division (a 10,000-row page has tens of thousands of ratios)."""
    exponent = Decimal(places).as_tuple().exponent
    assert isinstance(exponent, int)
    ratio = Fraction(scale) * 10**-exponent
    times, per = ratio.numerator, ratio.denominator

    def value(b: Bases) -> Value:
        below = sum([b[n] for n in denominator]) * per
        if not below:
            return None
        top = (sum([b[n] for n in numerator]) - sum([b[n] for n in minus])) * times
        if below < 0:
            top, below = -top, -below
        whole, rest = divmod(top, below)
        if 2 * rest > below or (2 * rest == below and whole % 2):
            whole += 1
        return Decimal(whole).scaleb(exponent)

    def sql(c: Columns) -> ColumnElement[Any]:
        top: ColumnElement[Any] = _sum(c, numerator)
        if minus:
            top = top - _sum(c, minus)
        return cast(top, Float) * float(scale) / func.nullif(_sum(c, denominator), 0)

    return Metric(
        name=name,
        kind="ratio",
        bases=(*numerator, *denominator, *minus),
        sql=sql,
        value=value,
    )


def _sum(columns: Columns, names: tuple[str, ...]) -> ColumnElement[Any]:
    total = columns[names[0]]
    for name in names[1:]:
        total = total + columns[name]
    return total


_PER_UNIT = Decimal(1) / MICROS
_APPROVALS = ("n:sale", "n:rejected", "n:lead")
_FIXED: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        _base("clicks", "count"),
        _base("unique_clicks", "count"),
        _base("conversions", "count"),
        _base("revenue", "money"),
        _base("cost", "money"),
        Metric(
            name="pending_revenue",
            kind="money",
            bases=("m:lead",),
            sql=lambda c: c["m:lead"],
            value=lambda b: money(b["m:lead"]),
        ),
        Metric(
            name="profit",
            kind="money",
            bases=("revenue", "cost"),
            sql=lambda c: c["revenue"] - c["cost"],
            value=lambda b: money(b["revenue"] - b["cost"]),
        ),
        # As if every pending lead were confirmed: a campaign with leads only is not at -100 %.
        Metric(
            name="projected_profit",
            kind="money",
            bases=("revenue", "m:lead", "cost"),
            sql=lambda c: c["revenue"] + c["m:lead"] - c["cost"],
            value=lambda b: money(b["revenue"] + b["m:lead"] - b["cost"]),
        ),
        _ratio(
            "projected_roi",
            ("revenue", "m:lead"),
            ("cost",),
            minus=("cost",),
            scale=Decimal(100),
            places="0.01",
        ),
        _ratio("cr", ("conversions",), ("clicks",), scale=Decimal(100), places="0.01"),
        _ratio("approval_rate", ("n:sale",), _APPROVALS, scale=Decimal(100), places="0.01"),
        _ratio("roi", ("revenue",), ("cost",), minus=("cost",), scale=Decimal(100), places="0.01"),
        _ratio("epc", ("revenue",), ("clicks",), scale=_PER_UNIT, places="0.0001"),
        _ratio("cpc", ("cost",), ("clicks",), scale=_PER_UNIT, places="0.0001"),
        _ratio("cpa", ("cost",), ("conversions",), scale=_PER_UNIT, places="0.01"),
    )
}


@functools.lru_cache(maxsize=1024)
def metric(name: str) -> Metric:
    """The metric called `name` (a name parse_query accepted); made once per name (a report
    asks for each of its metrics on every row)."""
    if name in _FIXED:
        return _FIXED[name]
    if name in TYPE_COUNT_METRICS:
        return _renamed(_base(f"n:{TYPE_COUNT_METRICS[name]}", "count"), name)
    typed = TYPED_METRIC.match(name)
    if typed is None:
        raise KeyError(name)
    family, kind = typed.groups()
    if family == "conversions":
        return _renamed(_base(f"n:{kind}", "count"), name)
    return _renamed(_base(f"m:{kind}", "money"), name)


def _renamed(base: Metric, name: str) -> Metric:
    return Metric(name=name, kind=base.kind, bases=base.bases, sql=base.sql, value=base.value)


def change(current: Value, previous: Value) -> Decimal | None:
    """The change from `previous` to `current` in percent of `previous` (None from 0)."""
    if current is None or previous is None or not previous:
        return None
    return ((Decimal(current) - Decimal(previous)) * 100 / abs(Decimal(previous))).quantize(
        Decimal("0.01")
    )
