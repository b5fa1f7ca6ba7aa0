"""The report builder: run a ReportQuery on the aggregate cubes when one holds every dimension
it needs, else on the raw tables, with grouping, metric filters, sorting and the page done in
SQL. Only the rows of the page (and the totals) become Python objects.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, func, select, true
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from clickloop.domain.report_facts import DAYPARTED
from clickloop.errors import InvalidInput
from clickloop.services import report_sql as sql
from clickloop.services.report_metrics import Metric, Value, change, metric
from clickloop.services.report_query import (
    CYCLE_DIMENSIONS,
    ENTITY_DIMENSIONS,
    TIME_DIMENSIONS,
    DimensionFilter,
    ReportQuery,
    SortKey,
    zone_named,
)
from clickloop.storage import cube_spans
from clickloop.storage import tables as t
from clickloop.storage.db import reader_engine
from clickloop.storage.report_cubes import settle, stored_daily_zone, stored_marked_dimensions

PATHS = ("auto", "raw", "aggregates", "hourly")
# The daily and the hourly cubes, smallest first by the rows a month's report reads at 10M
# clicks (docs/reports.md, "Aggregates"; of a spanned cube, about five spans): a report reads
# the first that holds its dimensions.
DAILY_BY_SIZE = (
    "daily_device_totals",
    "daily_language_totals",
    "daily_country_totals",
    "daily_country_device_totals",
    "daily_audience_totals",
    "daily_campaigns",
    "daily_campaign_devices",
    "daily_devices",
    "daily_campaign_countries",
    "daily_languages",
    "daily_countries",
    "daily_campaign_country_devices",
    "daypart_totals",
    "daypart_languages",
    "daypart_countries",
    "daypart_devices",
    "daypart_country_devices",
    "daypart_campaigns",
)
HOURLY_BY_SIZE = (
    "totals",
    "campaigns",
    "country_device_totals",
    "audience_totals",
    "devices",
    "languages",
    "campaign_country_devices",
    "countries",
)
# A report by hour bucket reads the first of these that holds its dimensions: the hourly cubes
# and the dayparted ones, whose one-day spans hold the local hours of the daily cubes' zone
# (day x 24 + hour of day, the same bucket), by the rows a month reads at 10M clicks: OS by
# hour reads 78k one-day rows of `daypart_devices` instead of 1.09M hourly ones of
# `audience_totals`. Alike in size, the hourly cube first: its bucket leads the primary key.
HOUR_BY_SIZE = (
    "totals",
    "daypart_totals",
    "daypart_devices",
    "daypart_languages",
    "daypart_countries",
    "campaigns",
    "daypart_campaigns",
    "country_device_totals",
    "daypart_country_devices",
    "audience_totals",
    "devices",
    "languages",
    "campaign_country_devices",
    "countries",
)
# What a daily cube cannot tell apart but a dayparted one: the hours of a day.
HOUR_DIMENSIONS = frozenset(("hour", "hour_of_day"))
# What every cube holds besides its own columns: the fact's type and the time buckets.
EVERY_CUBE = frozenset(("conversion_type", *TIME_DIMENSIONS, *CYCLE_DIMENSIONS))
_PG_QUERY_CANCELED = "57014"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultRow:
    dimensions: dict[str, str]  # ids as digits ("" for none), buckets as local dates/times
    labels: dict[str, str]  # names of campaigns, sources, offers and networks, else the value
    values: dict[str, Value]
    previous: dict[str, Value] | None = None
    change: dict[str, Decimal | None] | None = None

    def as_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "dimensions": self.dimensions,
            "labels": self.labels,
            "metrics": {name: _json(value) for name, value in self.values.items()},
        }
        if self.previous is not None and self.change is not None:
            row["previous"] = {name: _json(value) for name, value in self.previous.items()}
            row["change"] = {name: _json(value) for name, value in self.change.items()}
        return row


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportResult:
    query: ReportQuery
    source: str  # "raw" or "aggregates:<cube>"
    currency: str
    rows: list[ResultRow]
    totals: ResultRow | None
    total_rows: int  # groups that pass the filters; rows holds limit of them from offset
    previous_range: tuple[date, date] | None = None

    @property
    def truncated(self) -> bool:
        return self.query.offset + len(self.rows) < self.total_rows

    def table(self) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
        """The page and the totals as flat records, for CSV: each grouped dimension's label
        (and `<name>_id` for entities), each metric, with a comparison `<metric>_previous` and
        `<metric>_change` beside it."""
        q = self.query
        columns: list[str] = []
        for name in q.grouping:
            columns += [name, f"{name}_id"] if name in ENTITY_DIMENSIONS else [name]
        for name in q.metrics:
            columns += [name, f"{name}_previous", f"{name}_change"] if q.compare else [name]
        records = []
        for row in [*self.rows, *([self.totals] if self.totals is not None else [])]:
            record: dict[str, Any] = {f"{k}_id": v for k, v in row.dimensions.items()}
            record |= row.labels or {name: "Total" for name in q.grouping[:1]}
            record |= {name: _json(value) for name, value in row.values.items()}
            for name, value in (row.previous or {}).items():
                record[f"{name}_previous"] = _json(value)
                record[f"{name}_change"] = _json((row.change or {}).get(name))
            records.append(record)
        return tuple(columns), records

    def as_dict(self) -> dict[str, Any]:
        q = self.query
        answer: dict[str, Any] = {
            "source": self.source,
            "range": {"from": q.date_from, "to": q.date_to, "timezone": q.timezone},
            "attribution": q.attribution,
            "grouping": list(q.grouping),
            "metrics": list(q.metrics),
            "currency": self.currency,
            "rows": [row.as_dict() for row in self.rows],
            "total_rows": self.total_rows,
            "truncated": self.truncated,
            "limit": q.limit,
            "offset": q.offset,
        }
        if self.totals is not None:
            answer["totals"] = self.totals.as_dict()
        if self.previous_range is not None:
            answer["previous_range"] = {
                "from": self.previous_range[0],
                "to": self.previous_range[1],
            }
        return answer


def run_report(
    engine: Engine,
    query: ReportQuery,
    *,
    settings: Mapping[str, Any],
    statement_timeout: float = 0,
    path: str = "auto",
) -> ReportResult:
    """Run `query` (built by report_query.parse_query or directly) with the tracker `settings`
    (currency); the marked dimensions and the daily cubes' zone are read from the database.
    `path` forces "raw", "aggregates" (the smallest cube, daily or hourly) or "hourly" (tests
    compare them); `statement_timeout` (seconds, 0: the engine's own) bounds each statement."""
    if path not in PATHS:
        raise ValueError(path)
    zone = zone_named(query.timezone, "range.timezone")
    win = sql.window(query.date_from, query.date_to, zone)
    previous_range = _previous_range(query) if query.compare else None
    previous_win = sql.window(*previous_range, zone) if previous_range else None
    windows = [win] if previous_win is None else [win, previous_win]
    metrics = [metric(name) for name in query.metrics]
    wanted = {m.name: m for m in metrics}
    for rule in query.metric_filters:
        wanted.setdefault(rule.name, metric(rule.name))
    for key in query.sort:
        if key.name not in query.grouping:
            wanted.setdefault(key.name, metric(key.name))
    bases = sorted({base for m in wanted.values() for base in m.bases})
    if path != "raw":
        settle(engine)
    with report_connection(engine, statement_timeout) as conn:
        cube, sealed = None, None
        if path != "raw":
            # Read in the report's own transaction: the zone and readiness the cubes have then.
            days = stored_daily_zone(conn)
            daily = days.ready and days.timezone == query.timezone and path != "hourly"
            marked = stored_marked_dimensions(conn)
            cube = _pick_cube(query, windows, marked, daily=daily, unfilled=days.unfilled)
            if cube is not None:
                sealed = cube_spans.sealed(conn, writing=False).get(cube[0])
        if path in ("aggregates", "hourly") and cube is None:
            raise InvalidInput("grouping", "no aggregate cube holds these dimensions and zone")
        plan = _Plan(query=query, cube=cube, bases=bases, wanted=wanted, sealed=sealed)
        rows, all_totals, total_rows = plan.page(conn, win)
        totals = all_totals if query.totals else None
        if previous_win is not None:
            before = plan.previous(conn, previous_win, rows)
            rows = [_compared(row, before.get(_key(row, query.grouping)), metrics) for row in rows]
            if totals is not None:
                totals = _compared(
                    totals, plan.totals(conn, previous_win, query.metric_filters), metrics
                )
    return ReportResult(
        query=query,
        source="raw" if cube is None else f"aggregates:{cube[0]}",
        currency=str(settings.get("currency", "")),
        rows=rows,
        totals=totals,
        total_rows=total_rows,
        previous_range=previous_range,
    )


def _previous_range(query: ReportQuery) -> tuple[date, date]:
    days = (query.date_to - query.date_from).days + 1
    return query.date_from - timedelta(days=days), query.date_from - timedelta(days=1)


def _pick_cube(
    query: ReportQuery,
    windows: Sequence[sql.Window],
    marked: Collection[str],
    *,
    daily: bool,
    unfilled: Collection[str] = (),
) -> tuple[str, Table, str | None] | None:
    """The smallest cube holding every grouped or filtered dimension: a daily one only when
    `daily` (they are kept in the query's zone, and its range is whole local days there), an
    hourly one (not `unfilled` yet) only if the zone's offsets fit whole hours over the range;
    daily ones first, but by hour bucket (HOUR_BY_SIZE). Else the marked spans (daily) or the
    marked cube (hourly) for one marked field, the spans without campaign, source, offer or
    hours; else None (raw)."""
    needed = {*query.grouping, *(rule.name for rule in query.filters)}
    hourly = all(w.whole_hours for w in windows)
    filled = [name for name in HOURLY_BY_SIZE if hourly and name not in unfilled]
    if "hour" in needed:
        names = [n for n in HOUR_BY_SIZE if n in filled or (daily and n in DAYPARTED)]
    else:
        names = [*(DAILY_BY_SIZE if daily else ()), *filled]
    found = _smallest(needed, names)
    if found is not None:
        return found, t.cube_table(found), None
    alone = needed - EVERY_CUBE
    if daily and not needed & HOUR_DIMENSIONS and len(alone) == 1 and next(iter(alone)) in marked:
        return "marked_spans", t.report_marked_spans, next(iter(alone))
    alone = needed - sql.EVERY_CUBE
    if hourly and len(alone) == 1 and next(iter(alone)) in marked:
        return "marked", t.report_marked, next(iter(alone))
    return None


def _smallest(needed: set[str], names: Sequence[str]) -> str | None:
    """The first of the cubes `names` that holds every `needed` dimension."""
    for name in names:
        kept = t.REPORT_DAILY_CUBES.get(name)
        buckets = EVERY_CUBE
        if kept is not None and name not in DAYPARTED:
            buckets -= HOUR_DIMENSIONS
        entities, extras = kept if kept is not None else t.REPORT_CUBES[name]
        if needed <= {*extras, *buckets, *sql.entities_held(entities)}:
            return name
    return None


# PostgreSQL's memory for each sort or hash of a report (its default is 4 MB).
REPORT_WORK_MEM = "64MB"


@contextmanager
def report_connection(engine: Engine, seconds: float) -> Iterator[Connection]:
    """A read-only transaction that stops work past `seconds` (0: the engine's own limit): each
    statement on PostgreSQL (statement_timeout), the whole report on SQLite (a progress handler
    interrupts the running statement). Either is InvalidInput on `range`."""
    with reader_engine(engine).connect() as conn, conn.begin():
        sqlite = conn.dialect.name == "sqlite"
        raw: Any = None
        if seconds and sqlite:
            raw = conn.connection.driver_connection
            deadline = time.monotonic() + seconds
            raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        elif seconds:
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, int(seconds * 1000))}")
        if sqlite:
            # A second thread sorts beside the first: SQLite groups by sorting, and the top 100
            # of 283k zones or campaign > country at 10M clicks took ~10% less.
            conn.exec_driver_sql("PRAGMA threads = 2")
        else:
            # JIT compiles for ~100 ms whenever a plan looks costly; a report on the cubes is
            # done in less than that. With 4 MB, the 283k zones of a month at 10M clicks are
            # grouped by sorting 35 MB on disk (890-936 ms); with 64 MB they are hashed in
            # memory (811-844 ms).
            conn.exec_driver_sql("SET LOCAL jit = off")
            conn.exec_driver_sql(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'")
        try:
            yield conn
        except OperationalError as exc:
            code = getattr(exc.orig, "sqlstate", None)
            if code == _PG_QUERY_CANCELED or "interrupted" in str(exc.orig):
                raise InvalidInput(
                    "range",
                    f"the report ran longer than its limit ({seconds or 'statement timeout'} s): "
                    "ask for fewer days, groups or more filters",
                ) from exc
            raise
        finally:
            if raw is not None:
                raw.set_progress_handler(None, 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plan:
    query: ReportQuery
    cube: tuple[str, Table, str | None] | None
    bases: list[str]
    wanted: dict[str, Metric]
    sealed: int | None  # the day by which the cube's longer spans are kept (cube_spans)

    def grouped(self, conn: Connection, win: sql.Window, filters: Sequence[DimensionFilter]) -> Any:
        q = self.query
        if self.cube is None:
            facts = sql.raw_facts(
                q.grouping, filters, win, attribution=q.attribution, dialect=conn.dialect.name
            )
            sums = sql.grouped(facts, len(q.grouping), self.bases, q.attribution)
        else:
            _, table, marked = self.cube
            sums = sql.cube_grouped(
                table,
                q.grouping,
                filters,
                win,
                self.bases,
                attribution=q.attribution,
                dialect=conn.dialect.name,
                marked=marked,
                sealed=self.sealed,
            )
        return sums.subquery("grouped")

    def _columns(self, grouped: Any) -> dict[str, ColumnElement[Any]]:
        return {name: grouped.c[f"b{i}"] for i, name in enumerate(self.bases)}

    def _filtered(
        self, grouped: Any, filters: Sequence[Any], labelled: Collection[str] = ()
    ) -> Select[Any]:
        """The grouped rows that pass the metric filters, with the names of the `labelled`
        entities grouped by (l<i>: the campaign's, the offer's…)."""
        columns = self._columns(grouped)
        keys = [grouped.c[f"d{i}"] for i in range(len(self.query.grouping))]
        conditions = []
        for rule in filters:
            m = metric(rule.name)
            value = m.sql(columns)
            bounds = [m.threshold(bound) for bound in rule.values]
            if rule.operator == "gt":
                conditions.append(value > bounds[0])
            elif rule.operator == "lt":
                conditions.append(value < bounds[0])
            else:
                conditions.append(value.between(bounds[0], bounds[1]))
        source, named = self._labels(grouped, labelled)
        query = select(*keys, *columns.values(), *named).select_from(source)
        return query.where(*conditions)

    def _labels(self, groups: Any, names: Collection[str]) -> tuple[Any, list[Any]]:
        """`groups` (columns d<i>) joined to the entities of the grouped dimensions `names`,
        and those entities' names (as l<i>)."""
        source, named = groups, []
        for i, name in enumerate(self.query.grouping):
            if name in names and name in sql.ENTITY_TABLES:
                table = sql.ENTITY_TABLES[name].alias(f"label{i}")
                source = source.outerjoin(table, table.c.id == groups.c[f"d{i}"])
                named.append(table.c.name.label(f"l{i}"))
        return source, named

    def page(self, conn: Connection, win: sql.Window) -> tuple[list[ResultRow], ResultRow, int]:
        """The page's rows, the totals of every group that passes, and how many do."""
        q = self.query
        grouped = self.grouped(conn, win, q.filters)
        # Entities are named for every group only when the order is by their names; else for
        # the rows of the page alone (offer by hour over a month at 10M clicks: 27k groups,
        # 144 -> 130 ms on SQLite).
        ordered = {key.name for key in _sort_keys(q)} & set(q.grouping)
        filtered = self._filtered(grouped, q.metric_filters, labelled=ordered)
        # The groups are made once, then read twice: for the page, and for their count and
        # totals. Window sums over every group cost more (at 283k groups, 1.2 s against 0.8).
        kept = filtered.cte("kept").prefix_with("MATERIALIZED")
        page = (
            select(kept)
            .order_by(*self._order(kept))
            .limit(q.limit)
            .offset(q.offset)
            .subquery("page")
        )
        overall = select(
            func.count().label("total_rows"),
            *(func.sum(kept.c[f"b{i}"]).label(f"t{i}") for i in range(len(self.bases))),
        ).subquery("overall")
        named, labels = self._labels(page, set(q.grouping) - ordered)
        both = named.join(overall, true())  # one row of totals beside each row of the page
        statement = select(page, *labels, overall).select_from(both).order_by(*self._order(page))
        found = conn.execute(statement).all()
        rows = self._rows(found)
        if not found and not q.offset:  # no group passes
            return rows, ResultRow(dimensions={}, labels={}, values=self._values_of(_ZEROS)), 0
        if not found:  # a page past the end
            return rows, self.totals(conn, win, q.metric_filters), self.count(conn, filtered)
        fields = found[0]._mapping
        sums = {name: int(fields[f"t{i}"] or 0) for i, name in enumerate(self.bases)}
        totals = ResultRow(dimensions={}, labels={}, values=self._values_of(sums))
        return rows, totals, int(fields["total_rows"])

    def _order(self, groups: Any) -> list[Any]:
        """The asked order over `groups` (columns d<i>, b<i>, l<i> as _filtered names them),
        then the keys, so that ties come in a stable order and pages do not overlap."""
        q = self.query
        keys = [groups.c[f"d{i}"] for i in range(len(q.grouping))]
        columns = self._columns(groups)
        order = []
        for key in _sort_keys(q):
            if key.name in q.grouping:
                i = q.grouping.index(key.name)
                labelled = key.name in sql.ENTITY_TABLES
                value = func.coalesce(groups.c[f"l{i}"], "") if labelled else keys[i]
            else:
                value = self.wanted[key.name].sql(columns)
            order.append((value.desc() if key.descending else value.asc()).nulls_last())
        return order + [k.asc() for k in keys]

    def count(self, conn: Connection, filtered: Select[Any]) -> int:
        return int(conn.execute(select(func.count()).select_from(filtered.subquery())).scalar_one())

    def totals(self, conn: Connection, win: sql.Window, filters: Sequence[Any]) -> ResultRow:
        grouped = self.grouped(conn, win, self.query.filters)
        filtered = self._filtered(grouped, filters)
        kept = filtered.subquery("kept")
        sums = [
            func.coalesce(func.sum(kept.c[f"b{i}"]), 0).label(f"b{i}")
            for i in range(len(self.bases))
        ]
        record = conn.execute(select(*sums)).one()
        return ResultRow(dimensions={}, labels={}, values=self._values(record))

    def previous(
        self, conn: Connection, win: sql.Window, rows: Sequence[ResultRow]
    ) -> dict[tuple[str, ...], ResultRow]:
        """The previous period's rows with the keys of `rows` (metric filters do not apply)."""
        q = self.query
        if not rows:
            return {}
        narrowed = list(q.filters)
        for name in q.grouping:
            values = sorted({row.dimensions[name] for row in rows})
            if name in ENTITY_DIMENSIONS:
                values = [value or "0" for value in values]
            narrowed.append(DimensionFilter(name=name, operator="in_list", values=tuple(values)))
        grouped = self.grouped(conn, win, narrowed)
        filtered = self._filtered(grouped, ())
        before = self._rows(conn.execute(filtered).all())
        return {_key(row, q.grouping): row for row in before}

    def _values(self, record: Any) -> dict[str, Value]:
        fields = record._mapping
        return self._values_of({name: int(fields[f"b{i}"]) for i, name in enumerate(self.bases)})

    def _values_of(self, sums: Mapping[str, int]) -> dict[str, Value]:
        return {name: metric(name).value(sums) for name in self.query.metrics}

    def _rows(self, records: Sequence[Any]) -> list[ResultRow]:
        """Result rows of records with the columns d<i>, l<i> (entities only) and b<i>, read
        by position: a page can be 10,000 rows, and lookups by name cost a third of building
        them."""
        if not records:
            return []
        at = {name: i for i, name in enumerate(records[0]._fields)}
        grouping = [
            (name, at[f"d{i}"], at.get(f"l{i}")) for i, name in enumerate(self.query.grouping)
        ]
        bases = [(name, at[f"b{i}"]) for i, name in enumerate(self.bases)]
        rows = []
        for record in records:
            dimensions: dict[str, str] = {}
            labels: dict[str, str] = {}
            for name, d, label in grouping:
                value = dimensions[name] = _shown(name, record[d])
                named = None if label is None else record[label]
                labels[name] = str(named) if named is not None else (value or "(none)")
            sums = {name: int(record[b]) for name, b in bases}
            values = self._values_of(sums)
            rows.append(ResultRow(dimensions=dimensions, labels=labels, values=values))
        return rows


def _sort_keys(query: ReportQuery) -> tuple[SortKey, ...]:
    """The asked order, else time buckets first in time, else by clicks (or the first
    metric) from the most."""
    if query.sort:
        return query.sort
    if query.grouping and query.grouping[0] in (*TIME_DIMENSIONS, *CYCLE_DIMENSIONS):
        return (SortKey(name=query.grouping[0], descending=False),)
    first = "clicks" if "clicks" in query.metrics else query.metrics[0]
    return (SortKey(name=first, descending=True),)


def _shown(name: str, raw: Any) -> str:
    """A dimension value as the answer shows it (see dimension_sql for what SQL gives)."""
    if name in ENTITY_DIMENSIONS:
        return str(raw) if raw else ""
    if name == "hour":
        return datetime.fromtimestamp(int(raw) * 3600, UTC).strftime("%Y-%m-%dT%H:00")
    if name == "day":
        return (date(1970, 1, 1) + timedelta(days=int(raw))).isoformat()
    if name == "week":
        return (date(1970, 1, 1) + timedelta(days=int(raw) * 7 - 3)).isoformat()
    if name == "month":
        return f"{int(raw) // 12:04d}-{int(raw) % 12 + 1:02d}"
    return str(raw)


def _key(row: ResultRow, grouping: Sequence[str]) -> tuple[str, ...]:
    return tuple(row.dimensions[name] for name in grouping)


def _compared(row: ResultRow, before: ResultRow | None, metrics: Sequence[Metric]) -> ResultRow:
    previous = before.values if before is not None else {m.name: m.value(_ZEROS) for m in metrics}
    return replace(
        row,
        previous=dict(previous),
        change={m.name: change(row.values[m.name], previous[m.name]) for m in metrics},
    )


class _Zeros(dict[str, int]):
    def __missing__(self, key: str) -> int:
        return 0


_ZEROS = _Zeros()


def _json(value: Value) -> Any:
    return str(value) if isinstance(value, Decimal) else value
