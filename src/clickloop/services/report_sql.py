"""The SQL of a report: base sums per group (`grouped`'s columns d<i>, b<i>), from the raw
clicks and conversions with the range and the filters pushed down (`raw_facts`, summed by
`grouped`) or from a cube, whose rows hold each key's facts side by side (`cube_grouped`: plain
sums of its columns; by conversion type, its sums unfolded into facts for `grouped`). The
property tests hold the two paths equal.

Facts: `clicks` (n clicks, u unique clicks, m their cost) and `<p>:<type>` (n conversions of the
type, m their payout), `p` being `ct` (by click time) or `vt` (by conversion time). Local time
is UTC epoch seconds plus the zone's offset, chosen by a CASE over the offset changes in the
range, so hour, day, week and month buckets are the same arithmetic on both databases.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    FromClause,
    Select,
    Subquery,
    Table,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
    type_coerce,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import UnaryExpression
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.operators import custom_op

from clickloop.domain.report_facts import BUILT_IN_TYPES, SPAN_DAYS, spans
from clickloop.services.report_metrics import NOT_CONVERSIONS, NOT_REVENUE
from clickloop.services.report_query import (
    CYCLE_DIMENSIONS,
    ENTITY_DIMENSIONS,
    TIME_DIMENSIONS,
    DimensionFilter,
)
from clickloop.storage import tables as t


class exact_sum(FunctionElement[int]):
    """sum() of bigints as a bigint: on PostgreSQL `total8` (migration 0030), whose state is a
    bigint where sum()'s is 128 bits with a `numeric` result (a month by hour at 10M clicks:
    42k groups, a third of the grouping); SQLite's sum of integers is one already. An overflow
    is an error on both."""

    type = BigInteger()
    inherit_cache = True
    name = "exact_sum"


@compiles(exact_sum)
def _summed(element: exact_sum, compiler: Any, **kw: Any) -> str:
    return f"sum({compiler.process(element.clauses, **kw)})"


@compiles(exact_sum, "postgresql")
def _totalled(element: exact_sum, compiler: Any, **kw: Any) -> str:
    return f"total8({compiler.process(element.clauses, **kw)})"


ENTITY_TABLES: dict[str, Table] = {
    "campaign": t.campaigns,
    "traffic_source": t.traffic_sources,
    "offer": t.offers,
    "affiliate_network": t.affiliate_networks,
}
# Dimensions every cube can answer: its key columns, the offer's network, the fact, the hour.
EVERY_CUBE = frozenset((*ENTITY_DIMENSIONS, "conversion_type", *TIME_DIMENSIONS, *CYCLE_DIMENSIONS))
_STEP = timedelta(hours=6)  # no zone changes its offset twice within 6 hours


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
        select(v.subid, exact_sum(_micros(v.cost)).label("cost"))
        .where(v.cost.is_not(None))
        .group_by(v.subid)
        .subquery("carried")
    )
    return ClickCostSql(
        source=t.clicks.outerjoin(carried, carried.c.subid == t.clicks.c.subid),
        amount=func.coalesce(carried.c.cost, t.clicks.c.cost),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """A half-open UTC interval [since, until) and the offsets of the report's zone over it."""

    since: datetime
    until: datetime
    zone: ZoneInfo
    offsets: tuple[tuple[int, int], ...]  # (UTC epoch second it starts, offset in seconds)

    @property
    def span(self) -> tuple[datetime, datetime]:
        return self.since, self.until

    @property
    def whole_hours(self) -> bool:
        """Whether hourly cubes hold this window exactly: every offset and change is on an hour."""
        return all(start % 3600 == 0 and offset % 3600 == 0 for start, offset in self.offsets)


def window(date_from: date, date_to: date, zone: ZoneInfo) -> Window:
    """The window of the local dates date_from..date_to (both included)."""
    since = datetime.combine(date_from, datetime.min.time(), zone).astimezone(UTC)
    until = datetime.combine(date_to + timedelta(days=1), datetime.min.time(), zone).astimezone(UTC)
    return Window(since=since, until=until, zone=zone, offsets=_offsets(zone, since, until))


def _offsets(zone: ZoneInfo, since: datetime, until: datetime) -> tuple[tuple[int, int], ...]:
    def offset_at(epoch: int) -> int:
        delta = datetime.fromtimestamp(epoch, UTC).astimezone(zone).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    start, end = int(since.timestamp()), int(until.timestamp())
    found = [(start, offset_at(start))]
    step = int(_STEP.total_seconds())
    at = start
    while at < end - 1:
        ahead = min(at + step, end - 1)
        if offset_at(ahead) != found[-1][1]:
            low, high = at, ahead  # offset_at(low) is the old offset, offset_at(high) the new
            while high - low > 1:
                middle = (low + high) // 2
                if offset_at(middle) == found[-1][1]:
                    low = middle
                else:
                    high = middle
            found.append((high, offset_at(high)))
        at = ahead
    return tuple(found)


def local_seconds(epoch: ColumnElement[Any], offsets: Sequence[tuple[int, int]]) -> Any:
    """Local wall-clock seconds since 1970-01-01 00:00 of UTC `epoch` seconds."""
    if len(offsets) == 1:
        return epoch + offsets[0][1]
    shift = case(
        *((epoch < start, offsets[i - 1][1]) for i, (start, _) in enumerate(offsets) if i),
        else_=offsets[-1][1],
    )
    return epoch + shift


def month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def time_bucket(name: str, local: Any, win: Window) -> ColumnElement[Any]:
    """hour, day and week as whole hours/days/weeks since 1970 (weeks start on Monday: 1970-01-01
    was a Thursday), month as year * 12 + month - 1, hour_of_day 0..23, day_of_week 1..7."""
    days = local // 86400
    if name == "hour":
        return local // 3600  # type: ignore[no-any-return]
    if name == "day":
        return days  # type: ignore[no-any-return]
    if name == "week":
        return (days + 3) // 7  # type: ignore[no-any-return]
    if name == "hour_of_day":
        return (local // 3600) % 24  # type: ignore[no-any-return]
    if name == "day_of_week":
        return (days + 3) % 7 + 1  # type: ignore[no-any-return]
    first = win.since.astimezone(win.zone).date().replace(day=1)
    last = (win.until - timedelta(seconds=1)).astimezone(win.zone).date()
    starts: list[tuple[int, int]] = []  # (local second the month starts, its index)
    month = first
    while month <= last:
        starts.append((_local_second(month), month_index(month)))
        month = (month + timedelta(days=32)).replace(day=1)
    if len(starts) == 1:
        return literal_column(str(starts[0][1]))
    return case(
        *((local < begin, starts[i - 1][1]) for i, (begin, _) in enumerate(starts) if i),
        else_=starts[-1][1],
    )


def _local_second(day: date) -> int:
    return (day - date(1970, 1, 1)).days * 86400


@dataclass(frozen=True, slots=True, kw_only=True)
class Scan:
    """What one scanned table offers the dimensions: its columns, the fact's UTC instant in
    epoch seconds, and the fact's conversion type ('' for clicks)."""

    column: Callable[[str], ColumnElement[Any]]
    epoch: ColumnElement[Any]
    kind: ColumnElement[Any]
    network: ColumnElement[Any]  # the offer's affiliate network id (offers joined)
    local: ColumnElement[Any] | None = None  # local seconds, when the table holds local days
    hour: ColumnElement[Any] | None = None  # the UTC hour, when the table holds UTC hours
    # Whether its columns may be NULL: the raw tables' may, the cubes keep 0 and '' instead, so
    # their columns are compared bare and a filter on one seeks the primary key.
    nullable: bool = True


def entities_held(columns: Sequence[str]) -> set[str]:
    """The entity dimensions a table with these id columns answers (the network by the offer)."""
    return {
        name
        for name in ENTITY_DIMENSIONS
        if _column_of(name) in columns or (name == "affiliate_network" and "offer_id" in columns)
    }


def _column_of(name: str) -> str:
    """The column a click dimension is kept in: an entity's id, else its own name."""
    return f"{name}_id" if name in ENTITY_DIMENSIONS else name


def dimension_sql(name: str, scan: Scan, win: Window) -> ColumnElement[Any]:
    """A dimension's value in a scan: ids (0 for none), text ('' for none) or bucket numbers."""
    if name == "affiliate_network":
        return func.coalesce(scan.network, 0)
    if name == "conversion_type":
        return scan.kind
    if name == "hour" and scan.hour is not None and len(win.offsets) == 1:
        # One offset over the range: the bucket is the stored hour shifted; in UTC the column
        # itself, which leads the primary key, so SQLite groups campaign by hour in the key's
        # order instead of sorting (a month at 10M clicks: 300 -> 150-180 ms).
        shift = win.offsets[0][1] // 3600
        return scan.hour if shift == 0 else scan.hour + shift
    if name in TIME_DIMENSIONS or name in CYCLE_DIMENSIONS:
        local = scan.local if scan.local is not None else local_seconds(scan.epoch, win.offsets)
        return time_bucket(name, local, win)
    column = scan.column(_column_of(name))
    if not scan.nullable:
        return column
    return func.coalesce(column, 0 if name in ENTITY_DIMENSIONS else "")


def filter_sql(rule: DimensionFilter, value: ColumnElement[Any]) -> ColumnElement[bool]:
    """A dimension filter on the value dimension_sql gives."""
    name, operator = rule.name, rule.operator
    numeric = name in ENTITY_DIMENSIONS or name in CYCLE_DIMENSIONS
    if operator == "is_empty":
        if name in CYCLE_DIMENSIONS:
            return false()
        return value == (0 if numeric else "")
    if operator in ("contains", "not_contains"):
        text = rule.values[0]
        matched: ColumnElement[bool]
        if name in ENTITY_TABLES:  # the entity's name contains the text
            table = ENTITY_TABLES[name]
            named = select(table.c.id).where(table.c.name.icontains(text, autoescape=True))
            matched = value.in_(named.scalar_subquery())
        else:
            matched = value.icontains(text, autoescape=True)
        return matched if operator == "contains" else ~matched
    operands: list[Any] = [int(v) for v in rule.values] if numeric else list(rule.values)
    condition: ColumnElement[bool]
    if operator == "equals":
        condition = value == operands[0]
    elif operator == "not_equals":
        condition = value != operands[0]
    elif operator == "in_list":
        condition = value.in_(operands)
    else:
        condition = value.not_in(operands)
    return condition


def _epoch_sql(dialect: str) -> Callable[[ColumnElement[Any]], ColumnElement[Any]]:
    """UTC epoch seconds (whole, rounded down) of a stored UTC datetime, on this database."""
    if dialect == "sqlite":
        return lambda column: cast(func.strftime("%s", column), BigInteger)
    return lambda column: cast(func.floor(func.extract("epoch", column)), BigInteger)


def _with_offers(
    source: FromClause,
    offers: Any,
    offer_id: ColumnElement[Any],
    grouping: Sequence[str],
    filters: Sequence[DimensionFilter],
) -> FromClause:
    """`source` joined to its offers where the affiliate network is asked for (only then)."""
    if "affiliate_network" not in {*grouping, *(rule.name for rule in filters)}:
        return source
    return source.outerjoin(offers, offers.c.id == offer_id)


def _keys(count: int) -> list[ColumnElement[Any]]:
    # GROUP BY the output names: PostgreSQL cannot match an expression with bound parameters
    # (the local-time CASE) in GROUP BY to the same expression in the select list.
    return [literal_column(f"d{i}") for i in range(count)]


def _micros(column: ColumnElement[Any]) -> ColumnElement[Any]:
    return type_coerce(column, BigInteger)


def _dimensions(grouping: Sequence[str], scan: Scan, win: Window) -> list[ColumnElement[Any]]:
    return [dimension_sql(name, scan, win).label(f"d{i}") for i, name in enumerate(grouping)]


def _where(
    filters: Sequence[DimensionFilter], scan: Scan, win: Window
) -> list[ColumnElement[bool]]:
    return [filter_sql(rule, dimension_sql(rule.name, scan, win)) for rule in filters]


def raw_facts(
    grouping: Sequence[str],
    filters: Sequence[DimensionFilter],
    win: Window,
    *,
    attribution: str,
    dialect: str,
) -> Subquery:
    """Facts from the raw tables: clicks in the window (by click time) and conversions whose
    click (click time) or themselves (conversion time) fall in it, under the click's dimensions.
    A filter on the conversion type narrows the conversions, never the clicks."""
    c, v = t.clicks.c, t.conversions.c
    epoch = _epoch_sql(dialect)
    cost = click_cost_sql()
    clicked_at: ColumnElement[Any] = c.created_at
    if dialect == "sqlite" and not any(
        f.name == "campaign" and f.operator in ("equals", "in_list") for f in filters
    ):
        # Unless a campaign narrows it, SQLite would walk the (campaign_id, created_at) index
        # campaign by campaign and fetch each click by rowid: scanning the table is twice as
        # fast. A unary + keeps a column out of SQLite's index choice.
        clicked_at = UnaryExpression(c.created_at, operator=custom_op("+"), type_=c.created_at.type)
    offers = t.offers.alias("offer_of_click")
    click_scan = Scan(
        column=lambda name: c[name],
        epoch=epoch(c.created_at),
        kind=literal_column("''"),
        network=offers.c.affiliate_network_id,
    )
    on_clicks = [f for f in filters if f.name != "conversion_type"]
    clicks_part = (
        select(
            *_dimensions(grouping, click_scan, win),
            literal_column("'clicks'").label("fact"),
            func.count().label("n"),
            func.sum(case((c.is_unique, 1), else_=0)).label("u"),
            func.coalesce(exact_sum(_micros(cost.amount)), 0).label("m"),
        )
        .select_from(_with_offers(cost.source, offers, c.offer_id, grouping, filters))
        .where(clicked_at >= win.since, clicked_at < win.until, *_where(on_clicks, click_scan, win))
        .group_by(*_keys(len(grouping)))
    )
    by_click = attribution == "click_time"
    moment = c.created_at if by_click else v.converted_at
    prefix = f"{_PREFIXES[attribution]}:"
    conversion_scan = Scan(
        column=lambda name: c[name],
        epoch=epoch(moment),
        kind=v.type,
        network=offers.c.affiliate_network_id,
    )
    conversions_part = (
        select(
            *_dimensions(grouping, conversion_scan, win),
            (literal_column(f"'{prefix}'") + v.type).label("fact"),
            func.count().label("n"),
            literal_column("0").label("u"),
            exact_sum(_micros(v.payout)).label("m"),
        )
        .select_from(
            _with_offers(
                t.conversions.join(t.clicks, c.subid == v.subid),
                offers,
                c.offer_id,
                grouping,
                filters,
            )
        )
        .where(moment >= win.since, moment < win.until, *_where(filters, conversion_scan, win))
        .group_by(*_keys(len(grouping)), v.type)
    )
    return union_all(clicks_part, conversions_part).subquery("facts")


def cube_grouped(
    cube: Table,
    grouping: Sequence[str],
    filters: Sequence[DimensionFilter],
    win: Window,
    bases: Sequence[str],
    *,
    attribution: str,
    dialect: str,
    marked: str | None = None,
    sealed: int | None = None,
) -> Select[Any]:
    """Base sums per group (as `grouped` gives them) from a cube's rows (`marked`: the
    dimension report_marked or report_marked_spans rows are read for), each row all of its
    key's facts side by side (report_facts.VALUES): one aggregation of plain sums over the
    columns. A report by or filtered on conversion type unfolds the rows' sums into facts
    first (`_typed_facts`). A daily cube (a `day` column, local days in the window's zone) is
    read for the window's local days; of a cube of spans, no longer span that ends after the
    day `sealed` (storage/cube_spans.py)."""
    if "conversion_type" in {*grouping, *(rule.name for rule in filters)}:
        facts = _typed_facts(cube, grouping, filters, win, attribution, marked, sealed)
        return grouped(facts, len(grouping), bases, attribution)
    if "affiliate_network" in grouping and "offer_id" in cube.c and dialect == "sqlite":
        return _by_network(cube, grouping, filters, win, bases, attribution, marked, sealed)
    read = _cube_read(cube, grouping, filters, win, marked, sealed)
    q = cube.c
    p = _PREFIXES[attribution]

    def added(names: Sequence[str]) -> ColumnElement[Any]:
        return functools.reduce(operator.add, (_micros(q[name]) for name in names))

    def measure(name: str) -> ColumnElement[Any]:
        """A base's value in one row of the cube."""
        if name in _CLICK_BASES:
            return _micros(q[_CLICK_BASES[name]])
        if name == "conversions":
            kinds = [k for k in BUILT_IN_TYPES if k not in NOT_CONVERSIONS]
            return added([*(f"{p}_{k}_n" for k in kinds), f"{p}_n"])
        if name == "revenue":
            kinds = [k for k in BUILT_IN_TYPES if k not in NOT_REVENUE]
            return added([*(f"{p}_{k}_m" for k in kinds), f"{p}_m"])
        if name == "uncounted":
            return added([f"{p}_{k}_n" for k in sorted(NOT_CONVERSIONS)])
        measured, kind = name.split(":", 1)
        if kind in BUILT_IN_TYPES:
            return _micros(q[f"{p}_{kind}_{measured}"])
        return case((q.kind == kind, _micros(q[f"{p}_{measured}"])), else_=literal_column("0"))

    # The measures summed: the bases, and what tells a group the raw tables would not show (its
    # rows hold only the other attribution's conversions, or moved-out facts summing to
    # nothing): no click, conversion or uncounted conversion.
    counts = ["clicks", "conversions", "uncounted"]
    measures = {name: measure(name) for name in [*bases, *counts]}
    dimensions = _dimensions(grouping, read.scan, win)
    source: FromClause
    keys: list[ColumnElement[Any]]
    if dialect == "sqlite" and _in_key_order(cube, read, grouping, filters, marked):
        source, conditions = _merged(cube, read, dimensions, measures), []
        keys = [source.c[f"d{i}"] for i in range(len(grouping))]
        dimensions = keys
        summed = {name: exact_sum(source.c[name]) for name in measures}
    else:
        source, conditions = read.source, read.conditions
        keys = _cube_keys(cube, grouping, win)
        summed = {name: exact_sum(m) for name, m in measures.items()}
    sums = (
        select(
            *dimensions,
            *(func.coalesce(summed[name], 0).label(f"b{i}") for i, name in enumerate(bases)),
        )
        .select_from(source)
        .where(*conditions)
    )
    if not grouping:
        return sums  # one row, of zeros when nothing counts (as `grouped`'s)
    # The sums of the bases again, which both databases compute once.
    counted = functools.reduce(operator.add, (summed[name] for name in counts))
    return sums.group_by(*keys).having(counted != 0)


# The most spans `_merged` reads one by one (SQLite takes up to 500 parts in a compound SELECT):
# a report filtered on a time bucket reads one-day spans, up to 731.
MOST_MERGED = 64


def _in_key_order(
    cube: Table,
    read: _CubeRead,
    grouping: Sequence[str],
    filters: Sequence[DimensionFilter],
    marked: str | None,
) -> bool:
    """Whether `read` is of a few spans whose rows come in the order of the grouping: the
    grouped dimensions are plain columns, the primary key's first after the span's but those
    held to one value."""
    if not grouping or not 1 < len(read.spans) <= MOST_MERGED:
        return False
    keys = [column.name for column in cube.primary_key]
    held = {_column_of(rule.name) for rule in filters if rule.operator == "equals"}
    if marked is not None:
        held.add("dimension")
    free = [name for name in keys[keys.index("day") + 1 :] if name not in held]
    timed = {*TIME_DIMENSIONS, *CYCLE_DIMENSIONS}  # computed from the day and hour of day
    wanted = ["value" if name == marked else _column_of(name) for name in grouping]
    return not set(grouping) & timed and free[: len(wanted)] == wanted


def _merged(
    cube: Table,
    read: _CubeRead,
    dimensions: Sequence[ColumnElement[Any]],
    measures: dict[str, ColumnElement[Any]],
) -> Subquery:
    """The rows `cube_grouped` sums on SQLite over several spans when each span's rows come in
    the order of the grouping (`_in_key_order`): the spans read one by one, each row's
    `measures` summed across its columns first (columns named as the measures), and merged in
    that order, so that the rows are grouped as they come instead of sorted (at 10M clicks the
    top 100 of 283k zones from 0.7M span rows: 693 -> 603-616 ms; campaign > country > device
    type from 115k: 71 -> 59-60 ms). Read whole, the rows cost more to merge than to sort (the
    zones' statement: 0.61 -> 0.76 s)."""
    q = cube.c
    others = read.conditions[1:]  # but the spans
    parts = [
        select(*dimensions, *(m.label(name) for name, m in measures.items()))
        .select_from(read.source)
        .where(q.days == days, q.day == day, *others)
        for days, day in read.spans
    ]
    keys: list[ColumnElement[Any]] = [literal_column(f"d{i}") for i in range(len(dimensions))]
    return union_all(*parts).order_by(*keys).subquery("spans")


def _by_network(
    cube: Table,
    grouping: Sequence[str],
    filters: Sequence[DimensionFilter],
    win: Window,
    bases: Sequence[str],
    attribution: str,
    marked: str | None,
    sealed: int | None,
) -> Select[Any]:
    """`cube_grouped` by affiliate network on SQLite: the cube's rows grouped by offer first,
    then the offers' groups by their network, so the offers are looked up per group instead of
    per row and the rows are grouped in an index's order instead of sorted (network by hour
    over a month at 10M clicks: 73k rows, 27k offer groups, 2.8k network groups: 105-119 ->
    81 ms). PostgreSQL hashes the rows by network at once (38 ms; grouped by offer first, 63)."""
    by_offer = ["offer" if name == "affiliate_network" else name for name in grouping]
    on_network = [rule for rule in filters if rule.name == "affiliate_network"]
    others = [rule for rule in filters if rule.name != "affiliate_network"]
    inner = cube_grouped(
        cube,
        by_offer,
        others,
        win,
        bases,
        attribution=attribution,
        dialect="sqlite",
        marked=marked,
        sealed=sealed,
    ).subquery("by_offer")
    g = inner.c
    offers = t.offers.alias("offer_of_group")
    at = grouping.index("affiliate_network")
    # Grouped by the expressions, not by the output names, which are the inner query's too; a
    # literal 0, as PostgreSQL matches no bound parameter of GROUP BY to the select list's.
    network = func.coalesce(offers.c.affiliate_network_id, literal_column("0"))
    keys = [
        network if name == "affiliate_network" else g[f"d{i}"] for i, name in enumerate(grouping)
    ]
    return (
        select(
            *(key.label(f"d{i}") for i, key in enumerate(keys)),
            *(exact_sum(g[f"b{i}"]).label(f"b{i}") for i in range(len(bases))),
        )
        .select_from(inner.outerjoin(offers, offers.c.id == g[f"d{at}"]))
        .where(*(filter_sql(rule, network) for rule in on_network))
        .group_by(*keys)
    )


def _cube_keys(
    cube: Table, grouping: Sequence[str], win: Window, skipped: str = ""
) -> list[ColumnElement[Any]]:
    """What a cube's rows are grouped by for `grouping` (but `skipped`): a time bucket that
    is one to one with the key columns it is computed from, by those columns (the hour by a
    dayparted cube's day and hour of day, the day by a daily cube's day, the hour by an hourly
    cube's hour over one offset), so that the database groups in the primary key's order
    instead of sorting every row by the bucket (language by hour over a month at 10M clicks on
    SQLite: 122 -> 87 ms); any other dimension by its output name (as `_keys`)."""
    q = cube.c
    keys: list[ColumnElement[Any]] = []
    for i, name in enumerate(grouping):
        if name == skipped:
            continue
        if name == "hour" and "hour" in q and len(win.offsets) == 1:
            keys.append(q.hour)
        elif name == "hour" and "hour_of_day" in q:
            keys += [q.day, q.hour_of_day]
        elif name == "day" and "day" in q and "hour_of_day" not in q:
            keys.append(q.day)
        else:
            keys.append(literal_column(f"d{i}"))
    return keys


_PREFIXES = {"click_time": "ct", "conversion_time": "vt"}
_CLICK_BASES = {"clicks": "n", "unique_clicks": "u", "cost": "m"}


@dataclass(frozen=True, slots=True)
class _CubeRead:
    scan: Scan
    source: FromClause  # the cube, joined to the offers where the network is asked for
    conditions: list[ColumnElement[bool]]  # the window first, the filters (not conversion type)
    spans: Sequence[tuple[int, int]] = ()  # of a cube of spans, those read: (days, first day)


def _cube_read(
    cube: Table,
    grouping: Sequence[str],
    filters: Sequence[DimensionFilter],
    win: Window,
    marked: str | None,
    sealed: int | None,
) -> _CubeRead:
    """The cube's rows in the window that pass the filters (but those on conversion type)."""
    q = cube.c
    offers = t.offers.alias("offer_of_cube")
    chosen: Sequence[tuple[int, int]] = ()

    def column(name: str) -> ColumnElement[Any]:
        return q.value if name == marked else q[name]

    kind: ColumnElement[Any] = literal_column("''")  # a row holds every type: _typed_facts
    network = offers.c.affiliate_network_id
    # The key columns held to some values, whose rows a seek per bucket or span finds.
    pinned = {_column_of(rule.name) for rule in filters if rule.operator in ("equals", "in_list")}
    if marked is not None:
        pinned.add("dimension")  # a marked cube is read for one of its fields
    if "day" in q:
        # Local seconds already, no offset to add (64-bit: 32 would end in 2038).
        local = cast(q.day, BigInteger) * 86400
        if "hour_of_day" in q:
            local += q.hour_of_day * 3600
        scan = Scan(
            column=column, epoch=local, kind=kind, network=network, local=local, nullable=False
        )
        first, last = (day_number(moment.astimezone(win.zone).date()) for moment in win.span)
        if "days" in q:  # spans of days: a few per range, or its days for time buckets
            timed = {*grouping, *(f.name for f in filters)} & {*TIME_DIMENSIONS, *CYCLE_DIMENSIONS}
            if "hour_of_day" in q:
                timed.discard("hour_of_day")  # kept in every span
            longest = 1 if timed else SPAN_DAYS[-1]
            chosen = spans(first, last, longest, sealed)
            in_range = _span_rows(cube, chosen, pinned)
        else:
            in_range = _buckets(cube, q.day, first, last, pinned)
    else:
        scan = Scan(
            column=column,
            epoch=q.hour * 3600,
            kind=kind,
            network=network,
            hour=q.hour,
            nullable=False,
        )
        first, last = (int(moment.timestamp()) // 3600 for moment in win.span)
        in_range = _buckets(cube, q.hour, first, last, pinned)
    conditions = [
        in_range,
        *_where([f for f in filters if f.name != "conversion_type"], scan, win),
    ]
    if marked is not None:
        conditions.append(q.dimension == marked)
    source = _with_offers(cube, offers, q.offer_id, grouping, filters) if "offer_id" in q else cube
    return _CubeRead(scan=scan, source=source, conditions=conditions, spans=chosen)


def _typed_facts(
    cube: Table,
    grouping: Sequence[str],
    filters: Sequence[DimensionFilter],
    win: Window,
    attribution: str,
    marked: str | None,
    sealed: int | None,
) -> Subquery:
    """Facts (as raw_facts gives them) from a cube, for a report by or filtered on conversion
    type: its rows summed per group (but the type) and row kind first, then unfolded into a
    fact per column that holds something. A type filter narrows the conversions, never the
    clicks."""
    read = _cube_read(cube, grouping, filters, win, marked, sealed)
    q = cube.c
    p = _PREFIXES[attribution]
    untyped = [i for i, name in enumerate(grouping) if name != "conversion_type"]
    dimensions = [dimension_sql(grouping[i], read.scan, win).label(f"d{i}") for i in untyped]
    columns = ["n", "u", "m", *(f"{p}_{k}_{x}" for k in BUILT_IN_TYPES for x in "nm")]
    columns += [f"{p}_n", f"{p}_m"]
    sums = (
        select(
            *dimensions,
            q.kind.label("kind"),
            *(exact_sum(_micros(q[name])).label(name) for name in columns),
        )
        .select_from(read.source)
        .where(*read.conditions)
        .group_by(*_cube_keys(cube, grouping, win, skipped="conversion_type"), q.kind)
        .cte("sums")
    )
    s = sums.c
    held = [s[f"d{i}"] for i in untyped]
    built_in = s.kind == ""
    parts = [select(*held, literal("clicks").label("fact"), s.n, s.u, s.m).where(built_in)]
    parts += [
        select(
            *held,
            literal(f"{p}:{k}").label("fact"),
            s[f"{p}_{k}_n"].label("n"),
            literal(0).label("u"),
            s[f"{p}_{k}_m"].label("m"),
        ).where(built_in)
        for k in BUILT_IN_TYPES
    ]
    parts.append(
        select(
            *held,
            (literal(f"{p}:") + s.kind).label("fact"),
            s[f"{p}_n"].label("n"),
            literal(0).label("u"),
            s[f"{p}_m"].label("m"),
        ).where(~built_in)
    )
    unfolded = union_all(*parts).subquery("unfolded")
    f = unfolded.c
    kind = case((f.fact == "clicks", ""), else_=func.substr(f.fact, 4))
    typed = [filter_sql(rule, kind) for rule in filters if rule.name == "conversion_type"]
    return (
        select(
            *(
                kind.label(f"d{i}") if name == "conversion_type" else f[f"d{i}"]
                for i, name in enumerate(grouping)
            ),
            f.fact,
            f.n,
            f.u,
            f.m,
        )
        .where(f.n != 0, or_(f.fact == "clicks", and_(true(), *typed)))
        .subquery("facts")
    )


# The most buckets a cube read names one by one (_buckets): past it, the statement would carry
# more bound values than the seeks save (an hourly report of 42 days or more).
MOST_SEEKS = 1000


def _buckets(
    cube: Table,
    bucket: ColumnElement[int],
    first: int,
    end: int,
    pinned: Collection[str],
) -> ColumnElement[bool]:
    """The cube's rows of the buckets [first, end): each named by itself when the primary key's
    column after the bucket is `pinned` (to a campaign, a country), so the database seeks every
    bucket's rows of those values instead of reading the whole range (a month of one campaign
    at 10M clicks: 15 instead of 65 ms on SQLite); else as a range (faster when all is read)."""
    if _after(cube, bucket) in pinned and end - first <= MOST_SEEKS:
        return bucket.in_(range(first, end))
    return and_(bucket >= first, bucket < end)


def _span_rows(
    cube: Table, chosen: Sequence[tuple[int, int]], pinned: Collection[str]
) -> ColumnElement[bool]:
    """The cube's rows of the spans `chosen` ((days, first day), in order, as `spans` gives
    them): each span named by itself when the key's column after the day is `pinned` (seeks,
    as `_buckets`); else each run of spans of one length as a range of days, one read in the
    key's order instead of a seek per span whose rows are gathered and then sorted (a month of
    one-day spans of language by hour at 10M clicks on SQLite: 140 -> 125 ms)."""
    q = cube.c
    if _after(cube, q.day) in pinned:
        return or_(*(and_(q.days == days, q.day == day) for days, day in chosen))
    runs: list[tuple[int, int, int]] = []  # (days, first day of the first span, of the last)
    for days, day in chosen:
        if runs and runs[-1][0] == days and runs[-1][2] + days == day:
            runs[-1] = (days, runs[-1][1], day)
        else:
            runs.append((days, day, day))
    return or_(*(and_(q.days == days, q.day >= low, q.day <= high) for days, low, high in runs))


def _after(cube: Table, bucket: ColumnElement[int]) -> str:
    """The name of the primary key's column after `bucket`."""
    keys = [column.name for column in cube.primary_key]
    return keys[keys.index(bucket.name) + 1]


def day_number(day: date) -> int:
    """A local date as days since 1970-01-01, the `day` of the daily cubes."""
    return (day - date(1970, 1, 1)).days


def grouped(
    facts: Subquery, dimensions: int, bases: Sequence[str], attribution: str
) -> Select[Any]:
    """Base sums per group of the facts: clicks, unique_clicks, cost, conversions, revenue and
    per type `n:<type>` / `m:<type>`, each 0 when nothing counts for it."""
    f = facts.c
    prefix = f"{_PREFIXES[attribution]}:"
    is_click = f.fact == "clicks"

    def total(condition: ColumnElement[bool], measure: ColumnElement[Any]) -> Any:
        # FILTER, not a CASE giving 0: the rows of other facts (most of them) skip the sum.
        return func.coalesce(exact_sum(measure).filter(condition), 0)

    def base(name: str) -> Any:
        if name == "clicks":
            return total(is_click, f.n)
        if name == "unique_clicks":
            return total(is_click, f.u)
        if name == "cost":
            return total(is_click, f.m)
        if name == "conversions":
            skipped = [prefix + kind for kind in sorted(NOT_CONVERSIONS)]
            return total(and_(~is_click, f.fact.not_in(skipped)), f.n)
        if name == "revenue":
            skipped = [prefix + kind for kind in sorted(NOT_REVENUE)]
            return total(and_(~is_click, f.fact.not_in(skipped)), f.m)
        measure, kind = name.split(":", 1)
        return total(f.fact == prefix + kind, f.n if measure == "n" else f.m)

    keys = [f[f"d{i}"] for i in range(dimensions)]
    sums = [base(name).label(f"b{i}") for i, name in enumerate(bases)]
    return select(*keys, *sums).group_by(*keys)
