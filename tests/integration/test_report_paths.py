"""Property: for random clicks, conversions and status changes (postbacks through the real
service), every report (random grouping up to 3 levels, filters, zone, attribution) from the raw
tables equals the same report computed here in Python from the stored rows, and the same report
from the hourly and the daily cubes (kept in the report's zone) equals it, on SQLite and
PostgreSQL."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, event, insert, select
from sqlalchemy.engine import Engine

from clickloop.domain.costs import click_cost
from clickloop.errors import InvalidInput
from clickloop.services import entities, postbacks
from clickloop.services.postbacks import RawPostback
from clickloop.services.report_builder import ReportResult, run_report
from clickloop.services.report_query import ReportQuery, known_types, parse_query
from clickloop.storage import cube_spans, report_cubes
from clickloop.storage import tables as t

NOW = datetime(2026, 3, 1, tzinfo=UTC)
START = datetime(2026, 3, 28, 20, tzinfo=UTC)  # Berlin moves to summer time 29 hours later
SPAN_MINUTES = 3 * 24 * 60
TYPES = ("lead", "sale", "rejected", "trash", "rebill", "upsale")
DIMENSIONS = (
    "campaign",
    "offer",
    "affiliate_network",
    "traffic_source",
    "country",
    "device_type",
    "os",
    "sub_id_1",
    "conversion_type",
    "day",
    "hour",
    "week",
    "month",
    "hour_of_day",
    "day_of_week",
)
METRICS = ["clicks", "unique_clicks", "conversions", "revenue", "cost", "pending_revenue"]
METRICS += [f"conversions:{kind}" for kind in TYPES]
ZONES = ("UTC", "Europe/Berlin", "Asia/Kolkata", "America/New_York")


@dataclass(frozen=True)
class World:
    campaigns: tuple[int, int]
    offers: tuple[int, int]


@pytest.fixture
def world(engine: Engine) -> World:
    network = entities.create_affiliate_network(engine, name="Net", now=NOW)
    with_network = entities.create_offer(
        engine, name="A", url="https://a.test/", now=NOW, affiliate_network_id=network
    )
    plain = entities.create_offer(engine, name="B", url="https://b.test/", now=NOW)
    source = entities.create_traffic_source(engine, name="Src", now=NOW)
    first = entities.create_campaign(
        engine, name="One", alias="one", now=NOW, traffic_source_id=source
    )
    second = entities.create_campaign(engine, name="Two", alias="two", now=NOW)
    postbacks.add_conversion_type(engine, "upsale", now=NOW)
    assert (first, second) == (1, 2)  # as filter_strategy names them
    return World(campaigns=(first, second), offers=(with_network, plain))


clicks_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "minute": st.sampled_from(range(0, SPAN_MINUTES, 37)),  # spread over the span
            "campaign": st.integers(0, 1),
            "offer": st.sampled_from([0, 1, None]),
            "country": st.sampled_from(["DE", "US", None]),
            "device_type": st.sampled_from(["desktop", "mobile"]),
            "os": st.sampled_from(["Android", "Windows", None]),
            "sub_id_1": st.sampled_from(["a1", "b2", "ab", None]),
            "is_unique": st.sampled_from([True, False, None]),
            "cost": st.sampled_from([None, "0.1", "0.25"]),
        }
    ),
    min_size=3,
    max_size=14,
)
# (click index, tid, status, payout, cost or None, minutes after the click)
postbacks_strategy = st.lists(
    st.tuples(
        st.integers(0, 13),
        st.sampled_from(["", "x"]),
        st.sampled_from(TYPES),
        st.sampled_from(["0", "3", "10.5"]),
        st.sampled_from([None, "1", "2.5"]),
        st.integers(0, 36 * 60),
    ),
    min_size=2,
    max_size=16,
)
filter_strategy = st.sampled_from(
    [
        {"name": "country", "operator": "equals", "value": "DE"},
        {"name": "country", "operator": "not_in_list", "values": ["US"]},
        {"name": "country", "operator": "is_empty"},
        {"name": "sub_id_1", "operator": "contains", "value": "A"},
        {"name": "sub_id_1", "operator": "not_contains", "value": "b"},
        {"name": "device_type", "operator": "not_equals", "value": "mobile"},
        {"name": "os", "operator": "equals", "value": "Android"},
        {"name": "conversion_type", "operator": "in_list", "values": ["sale", "lead"]},
        {"name": "conversion_type", "operator": "not_equals", "value": "rebill"},
        {"name": "hour_of_day", "operator": "in_list", "values": [0, 1, 2, 22, 23]},
        {"name": "day_of_week", "operator": "equals", "value": 7},
        {"name": "campaign", "operator": "contains", "value": "one"},
        # The world's campaigns are 1 and 2: a cube read for them seeks each bucket's rows.
        {"name": "campaign", "operator": "equals", "value": "2"},
        {"name": "campaign", "operator": "in_list", "values": ["1", "3"]},
        {"name": "affiliate_network", "operator": "is_empty"},
        {"name": "offer", "operator": "is_empty"},
    ]
)
query_strategy = st.fixed_dictionaries(
    {
        "grouping": st.lists(st.sampled_from(DIMENSIONS), max_size=3, unique=True),
        "filters": st.lists(filter_strategy, max_size=2),
        "attribution": st.sampled_from(["conversion_time", "click_time"]),
        "range": st.fixed_dictionaries(
            {
                "from": st.sampled_from(["2026-03-28", "2026-03-29"]),
                "to": st.sampled_from(["2026-03-29", "2026-03-30", "2026-03-31"]),
                "timezone": st.sampled_from(ZONES),
            }
        ),
    }
)


def _clear(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in (t.received_postbacks, t.deliveries, t.conversions, t.clicks):
            conn.execute(delete(table))


def _store(
    engine: Engine, world: World, clicks: list[dict[str, Any]], posts: list[tuple[Any, ...]]
) -> None:
    rows = [
        {
            "subid": f"c{i}",
            "created_at": START + timedelta(minutes=click["minute"], seconds=i),
            "campaign_id": world.campaigns[click["campaign"]],
            "offer_id": None if click["offer"] is None else world.offers[click["offer"]],
            "traffic_source_id": None,
            "country": click["country"],
            "device_type": click["device_type"],
            "os": click.get("os"),
            "sub_id_1": click["sub_id_1"],
            "is_unique": click["is_unique"],
            "cost": None if click["cost"] is None else Decimal(click["cost"]),
        }
        for i, click in enumerate(clicks)
    ]
    if rows:
        with engine.begin() as conn:
            conn.execute(insert(t.clicks), rows)
    for index, tid, status, payout, cost, after in posts:
        if index >= len(rows):
            continue
        query = f"subid=c{index}&status={status}&payout={payout}&tid={tid}"
        query += "" if cost is None else f"&cost={cost}"
        at = rows[index]["created_at"] + timedelta(minutes=after)
        request = RawPostback(received_at=at, method="GET", query=query)
        with engine.begin() as conn:
            postbacks.process_postback(conn, request, postbacks.load_rules(conn), now=at)


def _local_key(name: str, moment: datetime, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    if name == "hour":
        return local.strftime("%Y-%m-%dT%H:00")
    if name == "day":
        return local.date().isoformat()
    if name == "week":
        return (local.date() - timedelta(days=local.weekday())).isoformat()
    if name == "month":
        return local.strftime("%Y-%m")
    if name == "hour_of_day":
        return str(local.hour)
    return str(local.isoweekday())


def _reference(engine: Engine, query: ReportQuery) -> dict[tuple[str, ...], dict[str, Any]]:
    """The report from the stored rows, by the definitions in docs/reports.md."""
    with engine.connect() as conn:
        clicks = {row.subid: row for row in conn.execute(select(t.clicks))}
        conversions = list(conn.execute(select(t.conversions)))
        networks = dict(conn.execute(select(t.offers.c.id, t.offers.c.affiliate_network_id)).all())
        names = {
            name: dict(conn.execute(select(table.c.id, table.c.name)).all())
            for name, table in (("campaign", t.campaigns), ("offer", t.offers))
        }
    zone = ZoneInfo(query.timezone)
    since = datetime.combine(query.date_from, datetime.min.time(), zone)
    until = datetime.combine(query.date_to + timedelta(days=1), datetime.min.time(), zone)

    def value(name: str, click: Any, moment: datetime, kind: str) -> str:
        if name == "conversion_type":
            return kind
        if name == "affiliate_network":
            return str(networks.get(click.offer_id) or "")
        if name in ("campaign", "offer", "traffic_source"):
            return str(getattr(click, f"{name}_id") or "")
        if name in ("country", "device_type", "os", "sub_id_1"):
            return getattr(click, name) or ""
        return _local_key(name, moment, zone)

    def passes(click: Any, moment: datetime, kind: str | None) -> bool:
        for rule in query.filters:
            if rule.name == "conversion_type" and kind is None:
                continue
            got = value(rule.name, click, moment, kind or "")
            if rule.name in ("campaign",) and rule.operator == "contains":
                got = names["campaign"].get(click.campaign_id, "")
            if not _holds(rule.operator, got, rule.values):
                return False
        return True

    sums: dict[tuple[str, ...], dict[str, Any]] = defaultdict(_zeros)
    carried: dict[str, list[Decimal | None]] = defaultdict(list)
    for conversion in conversions:
        carried[conversion.subid].append(conversion.cost)
    for click in clicks.values():
        if since <= click.created_at < until and passes(click, click.created_at, None):
            key = tuple(value(n, click, click.created_at, "") for n in query.grouping)
            sums[key]["clicks"] += 1
            sums[key]["unique_clicks"] += 1 if click.is_unique else 0
            sums[key]["cost"] += click_cost(click.cost, carried[click.subid])
    for conversion in conversions:
        click = clicks[conversion.subid]
        moment = click.created_at if query.attribution == "click_time" else conversion.converted_at
        if not (since <= moment < until and passes(click, moment, conversion.type)):
            continue
        key = tuple(value(n, click, moment, conversion.type) for n in query.grouping)
        sums[key][f"conversions:{conversion.type}"] += 1
        if conversion.type not in ("trash", "rebill"):
            sums[key]["conversions"] += 1
        if conversion.type not in ("lead", "rejected", "trash"):
            sums[key]["revenue"] += conversion.payout
        if conversion.type == "lead":
            sums[key]["pending_revenue"] += conversion.payout
    if not query.grouping and not sums:
        sums[()] = _zeros()
    return dict(sums)


def _zeros() -> dict[str, Any]:
    return {
        name: Decimal(0) if name in ("revenue", "cost", "pending_revenue") else 0
        for name in METRICS
    }


def _holds(operator: str, got: str, values: tuple[str, ...]) -> bool:
    checks: dict[str, Callable[[], bool]] = {
        "equals": lambda: got == values[0],
        "not_equals": lambda: got != values[0],
        "in_list": lambda: got in values,
        "not_in_list": lambda: got not in values,
        "contains": lambda: values[0].lower() in got.lower(),
        "not_contains": lambda: values[0].lower() not in got.lower(),
        "is_empty": lambda: got == "",
    }
    return checks[operator]()


def _rows(result: ReportResult) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    for row in result.rows:
        yield tuple(row.dimensions[n] for n in result.query.grouping), dict(row.values)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(clicks=clicks_strategy, posts=postbacks_strategy, body=query_strategy)
def test_raw_reports_equal_the_definitions(
    engine: Engine,
    world: World,
    clicks: list[dict[str, Any]],
    posts: list[tuple[Any, ...]],
    body: dict[str, Any],
) -> None:
    """Every random report from the raw tables equals the Python reference of its rows."""
    _clear(engine)
    _store(engine, world, clicks, posts)
    query = parse_query(
        body | {"metrics": METRICS, "limit": 10_000},
        now=NOW,
        default_timezone="UTC",
        conversion_types=known_types(["upsale"]),
    )
    result = run_report(engine, query, settings={"currency": "USD"}, path="raw")
    assert dict(_rows(result)) == _reference(engine, query)
    assert result.total_rows == len(result.rows)


def _fill_cubes(engine: Engine, zone: str) -> None:
    """The cubes as `clickloop reports rebuild` computes them from the raw rows, with sub_id_1
    marked, the daily ones in `zone` (the report zone)."""
    entities.update_settings(engine, {"report_marked_dimensions": ["sub_id_1"], "timezone": zone})
    with engine.begin() as conn:
        for table in t.report_aggregates:
            conn.execute(delete(table))
    report_cubes.rebuild(engine)


SORTABLE = ["clicks", "profit", "roi", "cr", "epc", "conversions:sale"]
paged_strategy = st.fixed_dictionaries(
    {
        "sort": st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.sampled_from([*SORTABLE, *DIMENSIONS]),
                    "order": st.sampled_from(["asc", "desc"]),
                }
            ),
            max_size=2,
            unique_by=lambda key: key["name"],
        ),
        "limit": st.integers(1, 6),
        "offset": st.sampled_from([0, 0, 1, 3]),
        "compare": st.booleans(),
        "metric_filters": st.lists(
            st.sampled_from(
                [
                    {"name": "clicks", "operator": "gt", "value": 1},
                    {"name": "roi", "operator": "lt", "value": 0},
                    {"name": "profit", "operator": "between", "values": ["-0.3", "5"]},
                ]
            ),
            max_size=1,
        ),
    }
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    clicks=clicks_strategy,
    posts=postbacks_strategy,
    body=query_strategy,
    paged=paged_strategy,
)
def test_aggregate_reports_equal_raw_reports(
    engine: Engine,
    world: World,
    clicks: list[dict[str, Any]],
    posts: list[tuple[Any, ...]],
    body: dict[str, Any],
    paged: dict[str, Any],
) -> None:
    """Every random report a cube can answer gives the same page, totals and comparison from
    the cube as from the raw tables: rows, order, figures, total_rows."""
    _clear(engine)
    _store(engine, world, clicks, posts)
    _fill_cubes(engine, body["range"]["timezone"])
    sort = [key for key in paged["sort"] if key["name"] in SORTABLE + body["grouping"]]
    compare = paged["compare"] and not {"hour", "day", "week", "month"} & set(body["grouping"])
    query = parse_query(
        body
        | {
            "metrics": [*METRICS, "roi", "cr", "profit", "approval_rate", "cpa"],
            "filters": body["filters"] + paged["metric_filters"],
            "sort": sort,
            "limit": paged["limit"],
            "offset": paged["offset"],
            "compare": compare,
        },
        now=NOW,
        default_timezone="UTC",
        conversion_types=known_types(["upsale"]),
    )
    tracker = entities.get_settings(engine)
    raw = run_report(engine, query, settings=tracker, path="raw")
    for path in ("hourly", "aggregates"):
        try:
            cubed = run_report(engine, query, settings=tracker, path=path)
        except InvalidInput:
            continue  # no cube holds these dimensions, or the zone is not on whole hours
        assert cubed.source.startswith("aggregates:")
        assert cubed.as_dict() | {"source": "raw"} == raw.as_dict()


@pytest.fixture(autouse=True, scope="module")
def _no_rezone_wait() -> Any:
    """One process writes here: nothing to wait for when the daily cubes change zone."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report_cubes, "REZONE_WAIT", 0)
        yield


@pytest.mark.parametrize(
    ("grouping", "spans", "rows"),
    [
        (["sub_id_1"], "marked_spans", 3),
        (["sub_id_1", "day"], "marked_spans", 5),
        (["day_of_week", "sub_id_1"], "marked_spans", 5),
        (["campaign", "country"], "daily_campaign_countries", 3),
        (["country", "day", "campaign"], "daily_campaign_countries", 6),
        (["campaign", "country", "device_type"], "daily_campaign_country_devices", 4),
        (["device_type", "campaign"], "daily_campaign_devices", 4),
        (["offer", "country"], "daily_countries", 2),
        (["campaign", "os"], "daily_devices", 4),
        (["country", "os", "day"], "daily_audience_totals", 5),
        (["campaign", "hour_of_day"], "daypart_campaigns", 6),
        (["hour_of_day", "day"], "daypart_totals", 6),
        (["country", "hour_of_day"], "daypart_countries", 5),
        (["hour", "country"], "daypart_countries", 6),
        (["country", "device_type", "hour_of_day"], "daypart_country_devices", 5),
        (["os", "hour"], "daypart_devices", 6),
        (["hour", "language"], "daypart_languages", 6),
    ],
)
def test_spans_of_days_answer_as_the_raw_tables(
    engine: Engine, world: World, grouping: list[str], spans: str, rows: int
) -> None:
    """A report on a marked field alone or on a spanned daily cube's dimensions (with the hour of
    day of a dayparted one, or its hours), over whole days, reads spans of days (these four days
    are one span; grouped by day or hour, one-day spans), and says the same as the raw
    tables."""
    at = [(0, "a1"), (300, "b2"), (1500, "a1"), (2900, "a1"), (4000, "ab")]
    clicks = [
        {"minute": minute, "campaign": i % 2, "offer": 0, "country": zone[0], "sub_id_1": zone}
        | {"device_type": "mobile" if i % 3 else "desktop", "is_unique": True, "cost": "0.1"}
        | {"os": "Android" if i % 3 else "Windows"}
        for i, (minute, zone) in enumerate(at)
    ]
    posts = [(0, "", "sale", "10.5", None, 30 * 60), (2, "x", "lead", "3", None, 5)]
    _store(engine, world, clicks, posts)
    _fill_cubes(engine, "UTC")
    raw = _spanned_equals_raw(engine, grouping, spans)
    assert len(raw.rows) == rows


@pytest.mark.parametrize(
    ("grouping", "spans"),
    [
        (["sub_id_1"], "marked_spans"),
        (["campaign", "country"], "daily_campaign_countries"),
        (["campaign", "hour_of_day"], "daypart_campaigns"),
    ],
)
def test_spans_past_the_seal_mark_are_not_read(
    engine: Engine, world: World, grouping: list[str], spans: str
) -> None:
    """The writers keep no longer span that ends after the seal mark (storage/cube_spans.py):
    a report reads the one-day spans there. Here the four days' span is emptied, and the mark
    leaves only the first two days' span sealed."""
    at = [(0, "a1"), (300, "b2"), (1500, "a1"), (2900, "a1"), (4000, "ab")]
    clicks = [
        {"minute": minute, "campaign": i % 2, "offer": 0, "country": zone[0], "sub_id_1": zone}
        | {"device_type": "mobile", "os": "Android", "is_unique": True, "cost": "0.1"}
        for i, (minute, zone) in enumerate(at)
    ]
    _store(engine, world, clicks, [(0, "", "sale", "10.5", None, 30 * 60)])
    _fill_cubes(engine, "UTC")
    first = (datetime(2026, 3, 28, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).days
    with engine.begin() as conn:
        cube_spans.move_marks(conn, first + 2)
        for cube in cube_spans.SPANNED:
            table = t.cube_table(cube)
            conn.execute(delete(table).where(table.c.days > 2))
    raw = _spanned_equals_raw(engine, grouping, spans)
    assert raw.rows


@pytest.mark.parametrize(
    ("grouping", "held", "spans"),
    [
        (["sub_id_1"], False, "marked_spans"),
        (["campaign", "country"], False, "daily_campaign_countries"),
        (["campaign", "country", "device_type"], False, "daily_campaign_country_devices"),
        (["country", "device_type"], True, "daily_campaign_country_devices"),
    ],
)
def test_spans_merged_in_their_key_order_answer_as_the_raw_tables(
    engine: Engine, world: World, grouping: list[str], held: bool, spans: str
) -> None:
    """On SQLite a report over several spans whose rows come in the order of its grouping (the
    key's columns after the span's, but one `held` to a campaign) reads them span by span,
    merged in that order (report_sql._merged), and says the same as the raw tables; PostgreSQL
    reads them at once. Here a two-day span and a four-day one, and a custom conversion type."""
    at = [(-2000, "a1"), (-1900, "b2"), (0, "a1"), (1500, "b2"), (2900, "a1"), (4000, "ab")]
    clicks = [
        {"minute": minute, "campaign": i % 2, "offer": 0, "country": zone[0], "sub_id_1": zone}
        | {"device_type": "mobile" if i % 3 else "desktop", "is_unique": True, "cost": "0.1"}
        for i, (minute, zone) in enumerate(at)
    ]
    posts = [(0, "", "sale", "10.5", None, 30), (2, "x", "lead", "3", None, 5)]
    posts += [(3, "u", "upsale", "2", None, 10)]
    _store(engine, world, clicks, posts)
    _fill_cubes(engine, "UTC")
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    campaign = {"name": "campaign", "operator": "equals", "value": world.campaigns[0]}
    days = {"from": "2026-03-26", "to": "2026-03-31", "timezone": "UTC"}
    raw = _spanned_equals_raw(engine, grouping, spans, days, [campaign] if held else [])
    assert raw.rows
    table = t.cube_table(spans).name
    merged = any("UNION ALL" in sql and table in sql for sql in statements)
    assert merged == (engine.dialect.name == "sqlite")


def _spanned_equals_raw(
    engine: Engine,
    grouping: list[str],
    spans: str,
    days: dict[str, str] | None = None,
    filters: list[dict[str, Any]] | None = None,
) -> ReportResult:
    """The report by `grouping` over `days` (2026-03-28 to 31 in UTC) from cube `spans`,
    checked equal to the raw tables' answer, which it returns."""
    days = days or {"from": "2026-03-28", "to": "2026-03-31", "timezone": "UTC"}
    query = parse_query(
        {"grouping": grouping, "metrics": [*METRICS, "profit"], "range": days}
        | {"filters": filters or []},
        now=NOW,
        default_timezone="UTC",
        conversion_types=known_types(["upsale"]),
    )
    tracker = entities.get_settings(engine)
    raw = run_report(engine, query, settings=tracker, path="raw")
    spanned = run_report(engine, query, settings=tracker)
    assert spanned.source == f"aggregates:{spans}"
    assert spanned.as_dict() | {"source": "raw"} == raw.as_dict()
    return raw
