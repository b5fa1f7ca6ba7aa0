"""The report builder: every dimension family, operator, metric, sort, page, totals, comparison,
the attribution switch and local time across a DST change, exact on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.engine import Engine

from clickloop.errors import InvalidInput
from clickloop.services import entities, postbacks
from clickloop.services.report_builder import ReportResult, report_connection, run_report
from clickloop.services.report_query import known_types, parse_query
from clickloop.storage import report_cubes
from clickloop.storage import tables as t

NOW = datetime(2026, 3, 1, tzinfo=UTC)
TODAY = datetime(2026, 4, 1, 12, tzinfo=UTC)


@dataclass(frozen=True)
class Ids:
    alpha: int
    beta: int
    network: int
    offer_a: int
    offer_b: int
    source: int


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def _seed(engine: Engine) -> Ids:
    """Five clicks from 28 to 30 March 2026 (Berlin moves to summer time on the 29th at 01:00
    UTC), one on the 25th for comparisons, and conversions of every kind."""
    network = entities.create_affiliate_network(engine, name="Net", now=NOW)
    offer_a = entities.create_offer(
        engine, name="Offer A", url="https://a.test/", now=NOW, affiliate_network_id=network
    )
    offer_b = entities.create_offer(engine, name="Offer B", url="https://b.test/", now=NOW)
    source = entities.create_traffic_source(engine, name="Src", now=NOW)
    alpha = entities.create_campaign(
        engine, name="Alpha", alias="alpha", now=NOW, traffic_source_id=source
    )
    beta = entities.create_campaign(engine, name="Beta", alias="beta", now=NOW)
    postbacks.add_conversion_type(engine, "upsale", now=NOW)
    clicks: list[dict[str, Any]] = [
        # subid, when, campaign, offer, source, country, device, os, browser, language,
        # referrer domain, keyword, sub_id_1, unique, cost
        _click("k0", _at(25, 10), alpha, offer_a, source, "DE", "desktop", "Windows", "Chrome",
               "de", "google.com", "shoes", "z1", True, "0.50"),
        _click("k1", _at(28, 10), alpha, offer_a, source, "DE", "desktop", "Windows", "Chrome",
               "de", "google.com", "shoes", "z1", True, "0.10"),
        _click("k2", _at(28, 23, 30), alpha, offer_a, source, "DE", "mobile", "Android",
               "Chrome", "de", None, "boots", "z2", True, "0.20"),
        _click("k3", _at(29, 12), alpha, offer_b, source, "US", "mobile", "iOS", "Safari", "en",
               "facebook.com", None, "z1", False, "0.30"),
        _click("k4", _at(30, 8), beta, offer_b, None, None, "desktop", "Linux", "Firefox", None,
               None, None, None, None, None),
        _click("k5", _at(30, 9), beta, offer_a, None, "FR", "tablet", "iOS", "Safari", "fr",
               "news.test", "hats", "z3", True, "1.00"),
    ]  # fmt: skip
    conversions = [
        ("k1", "", "sale", "10", None, _at(29, 8)),
        ("k1", "r1", "rebill", "5", None, _at(30, 8)),
        ("k2", "", "lead", "4", None, _at(29, 9)),
        ("k3", "", "rejected", "3", None, _at(29, 13)),
        ("k3", "t", "trash", "1", None, _at(29, 14)),
        ("k5", "", "upsale", "7", "2.5", _at(31, 10)),
    ]
    with engine.begin() as conn:
        conn.execute(insert(t.clicks), clicks)
        by_subid = {c["subid"]: c for c in clicks}
        for subid, tid, kind, payout, cost, at in conversions:
            click = by_subid[subid]
            conn.execute(
                insert(t.conversions).values(
                    subid=subid,
                    tid=tid,
                    type=kind,
                    original_status=kind,
                    payout=Decimal(payout),
                    currency="USD",
                    original_payout=Decimal(payout),
                    original_currency="USD",
                    rate="1",
                    cost=None if cost is None else Decimal(cost),
                    campaign_id=click["campaign_id"],
                    offer_id=click["offer_id"],
                    traffic_source_id=click["traffic_source_id"],
                    params={},
                    converted_at=at,
                    created_at=at,
                    updated_at=at,
                )
            )
    report_cubes.rebuild(engine)  # as the writers would have kept them
    return Ids(
        alpha=alpha, beta=beta, network=network, offer_a=offer_a, offer_b=offer_b, source=source
    )


def _click(
    subid: str,
    at: datetime,
    campaign: int,
    offer: int,
    source: int | None,
    country: str | None,
    device: str,
    os: str,
    browser: str,
    language: str | None,
    referrer_domain: str | None,
    keyword: str | None,
    sub_id_1: str | None,
    unique: bool | None,
    cost: str | None,
) -> dict[str, Any]:
    return {
        "subid": subid,
        "created_at": at,
        "campaign_id": campaign,
        "offer_id": offer,
        "traffic_source_id": source,
        "country": country,
        "device_type": device,
        "os": os,
        "browser": browser,
        "language": language,
        "referrer_domain": referrer_domain,
        "keyword": keyword,
        "sub_id_1": sub_id_1,
        "is_unique": unique,
        "cost": None if cost is None else Decimal(cost),
    }


def _report(engine: Engine, **body: Any) -> ReportResult:
    body.setdefault("range", {"from": "2026-03-28", "to": "2026-03-31"})
    body["range"].setdefault("timezone", "Europe/Berlin")
    types = known_types(row["name"] for row in postbacks.list_conversion_types(engine))
    query = parse_query(body, now=TODAY, default_timezone="UTC", conversion_types=types)
    return run_report(engine, query, settings={"currency": "USD"})


def _by(result: ReportResult, metric: str = "clicks") -> dict[tuple[str, ...], Any]:
    return {
        tuple(row.labels[name] for name in result.query.grouping): row.values[metric]
        for row in result.rows
    }


def test_every_metric_of_the_totals(engine: Engine) -> None:
    """The totals row: counts, money and ratios as docs/reports.md defines them."""
    _seed(engine)
    result = _report(
        engine,
        metrics=[
            *("clicks", "unique_clicks", "conversions", "leads", "sales", "rejected"),
            *("registrations", "deposits", "conversions:upsale", "revenue:upsale", "cr"),
            *("approval_rate", "revenue", "pending_revenue", "cost", "profit", "roi"),
            *("epc", "cpc", "cpa"),
        ],
    )
    assert result.source == "aggregates:totals"
    assert result.totals is not None
    assert result.totals.values == {
        "clicks": 5,
        "unique_clicks": 3,
        "conversions": 4,  # sale, lead, rejected, upsale: not trash, not the rebill
        "leads": 1,
        "sales": 1,
        "rejected": 1,
        "registrations": 0,
        "deposits": 0,
        "conversions:upsale": 1,
        "revenue:upsale": Decimal(7),
        "cr": Decimal("80.00"),
        "approval_rate": Decimal("33.33"),
        "revenue": Decimal(22),  # sale 10 + rebill 5 + upsale 7
        "pending_revenue": Decimal(4),
        "cost": Decimal("3.10"),  # k5's postback cost 2.5 replaces its 1.00
        "profit": Decimal("18.90"),
        "roi": Decimal("609.68"),
        "epc": Decimal("4.4000"),
        "cpc": Decimal("0.6200"),
        "cpa": Decimal("0.78"),
    }


def test_days_by_conversion_time_and_by_click_time(engine: Engine) -> None:
    """The switch moves conversions to their click's day; clicks and cost never move."""
    _seed(engine)
    metrics = ["clicks", "cost", "conversions", "revenue"]
    by_conversion = _report(engine, grouping=["day"], metrics=metrics)
    by_click = _report(engine, grouping=["day"], metrics=metrics, attribution="click_time")

    def figures(result: ReportResult) -> dict[str, tuple[Any, ...]]:
        return {row.dimensions["day"]: tuple(row.values[m] for m in metrics) for row in result.rows}

    assert figures(by_conversion) == {
        "2026-03-28": (1, Decimal("0.10"), 0, 0),
        "2026-03-29": (2, Decimal("0.50"), 3, Decimal(10)),
        "2026-03-30": (2, Decimal("2.50"), 0, Decimal(5)),
        "2026-03-31": (0, 0, 1, Decimal(7)),
    }
    assert figures(by_click) == {
        "2026-03-28": (1, Decimal("0.10"), 1, Decimal(15)),
        "2026-03-29": (2, Decimal("0.50"), 2, 0),
        "2026-03-30": (2, Decimal("2.50"), 1, Decimal(7)),
    }


def test_time_buckets_are_local_across_the_dst_change(engine: Engine) -> None:
    """Hours, weekdays, weeks and months are Berlin's, before (UTC+1) and after (UTC+2).
    (By click time, so that conversions add no rows of their own hours.)"""
    _seed(engine)
    by_click = "click_time"
    hours = _report(engine, grouping=["hour"], metrics=["clicks"], attribution=by_click)
    assert _by(hours) == {
        ("2026-03-28T11:00",): 1,  # 10:00 UTC in winter time
        ("2026-03-29T00:00",): 1,  # 23:30 UTC on the 28th is the 29th in Berlin
        ("2026-03-29T14:00",): 1,  # 12:00 UTC in summer time
        ("2026-03-30T10:00",): 1,
        ("2026-03-30T11:00",): 1,
    }
    assert _by(_report(engine, grouping=["hour_of_day"], attribution=by_click)) == {
        ("0",): 1,
        ("10",): 1,
        ("11",): 2,
        ("14",): 1,
    }
    weekdays = _report(engine, grouping=["day_of_week"], attribution=by_click)
    assert _by(weekdays) == {("1",): 2, ("6",): 1, ("7",): 2}
    weeks = _report(engine, grouping=["week"], attribution=by_click)
    assert _by(weeks) == {("2026-03-23",): 3, ("2026-03-30",): 2}
    assert _by(_report(engine, grouping=["month"], attribution=by_click)) == {("2026-03",): 5}
    day = {"from": "2026-03-28", "to": "2026-03-28"}
    utc = _report(engine, grouping=["day"], range=day, attribution=by_click)
    utc_zone = _report(
        engine, grouping=["day"], range=day | {"timezone": "UTC"}, attribution=by_click
    )
    assert _by(utc) == {("2026-03-28",): 1} and _by(utc_zone) == {("2026-03-28",): 2}


def test_half_hour_zones_bucket_exactly(engine: Engine) -> None:
    """A zone half an hour off UTC (India) moves the 23:30 UTC click to the next local hour."""
    _seed(engine)
    result = _report(
        engine,
        grouping=["hour"],
        range={"from": "2026-03-29", "to": "2026-03-29", "timezone": "Asia/Kolkata"},
        attribution="click_time",
    )
    assert _by(result) == {("2026-03-29T05:00",): 1, ("2026-03-29T17:00",): 1}


def test_dimension_families(engine: Engine) -> None:
    """Entities show their names, the network comes through the offer, text keeps '' as none."""
    ids = _seed(engine)
    assert _by(_report(engine, grouping=["campaign"])) == {("Alpha",): 3, ("Beta",): 2}
    networks = _report(engine, grouping=["affiliate_network"])
    assert _by(networks) == {("Net",): 3, ("(none)",): 2}
    assert {row.dimensions["affiliate_network"] for row in networks.rows} == {
        str(ids.network),
        "",
    }
    assert _by(_report(engine, grouping=["traffic_source"])) == {("Src",): 3, ("(none)",): 2}
    assert _by(_report(engine, grouping=["offer"])) == {("Offer A",): 3, ("Offer B",): 2}
    assert _by(_report(engine, grouping=["country"])) == {
        ("DE",): 2,
        ("US",): 1,
        ("FR",): 1,
        ("(none)",): 1,
    }
    assert _by(_report(engine, grouping=["device_type", "os"])) == {
        ("desktop", "Windows"): 1,
        ("desktop", "Linux"): 1,
        ("mobile", "Android"): 1,
        ("mobile", "iOS"): 1,
        ("tablet", "iOS"): 1,
    }
    assert _by(_report(engine, grouping=["referrer_domain"])) == {
        ("google.com",): 1,
        ("facebook.com",): 1,
        ("news.test",): 1,
        ("(none)",): 2,
    }
    three = _report(
        engine,
        grouping=["campaign", "sub_id_1", "day"],
        metrics=["clicks"],
        attribution="click_time",
    )
    assert _by(three) == {
        ("Alpha", "z1", "2026-03-28"): 1,
        ("Alpha", "z2", "2026-03-29"): 1,
        ("Alpha", "z1", "2026-03-29"): 1,
        ("Beta", "(none)", "2026-03-30"): 1,
        ("Beta", "z3", "2026-03-30"): 1,
    }
    types = _report(engine, grouping=["conversion_type"], metrics=["clicks", "conversions"])
    kinds = ("sale", "lead", "rejected", "trash", "rebill", "upsale")
    assert _by(types) == {("(none)",): 5} | {(kind,): 0 for kind in kinds}
    assert _by(types, "conversions") == {
        ("(none)",): 0,
        ("sale",): 1,
        ("lead",): 1,
        ("rejected",): 1,
        ("trash",): 0,
        ("rebill",): 0,
        ("upsale",): 1,
    }


@pytest.mark.parametrize(
    ("name", "operator", "operand", "clicks"),
    [
        ("country", "equals", "DE", 2),
        ("country", "not_equals", "DE", 3),
        ("country", "in_list", ["US", "FR"], 2),
        ("country", "not_in_list", ["US", "FR"], 3),
        ("country", "is_empty", None, 1),
        ("referrer_domain", "contains", "GOOGLE", 1),
        ("referrer_domain", "not_contains", "google", 4),
        ("referrer_domain", "contains", "%", 0),
        ("keyword", "in_list", ["shoes", "hats"], 2),
        ("campaign", "contains", "alp", 3),
        ("campaign", "not_contains", "alp", 2),
        ("campaign", "is_empty", None, 0),
        ("traffic_source", "is_empty", None, 2),
        ("hour_of_day", "equals", 10, 1),
        ("hour_of_day", "in_list", [10, "11"], 3),
        ("day_of_week", "equals", 1, 2),
        ("day_of_week", "is_empty", None, 0),
        ("conversion_type", "equals", "sale", 5),
    ],
)
def test_dimension_operators(
    engine: Engine, name: str, operator: str, operand: Any, clicks: int
) -> None:
    """Each dimension operator keeps the clicks it should (contains ignores case and wildcards;
    a conversion type filter narrows conversions, not clicks)."""
    _seed(engine)
    rule: dict[str, Any] = {"name": name, "operator": operator}
    if isinstance(operand, list):
        rule["values"] = operand
    elif operand is not None:
        rule["value"] = operand
    result = _report(engine, filters=[rule])
    assert result.totals is not None and result.totals.values["clicks"] == clicks


def test_entity_filters_take_ids(engine: Engine) -> None:
    """Campaign, offer and network filters take ids; the network filter goes through the offer;
    a conversion type filter leaves only that type's conversions."""
    ids = _seed(engine)
    beta = _report(engine, filters=[{"name": "campaign", "operator": "equals", "value": ids.beta}])
    network = _report(
        engine,
        filters=[{"name": "affiliate_network", "operator": "equals", "value": str(ids.network)}],
    )
    sales = _report(
        engine, filters=[{"name": "conversion_type", "operator": "equals", "value": "sale"}]
    )
    assert beta.totals is not None and beta.totals.values["clicks"] == 2
    assert network.totals is not None and network.totals.values["clicks"] == 3
    assert sales.totals is not None
    assert (sales.totals.values["conversions"], sales.totals.values["revenue"]) == (1, 10)


def test_metric_filters_apply_after_grouping(engine: Engine) -> None:
    """gt, lt and between keep the groups whose figure passes; totals add up what is kept."""
    _seed(engine)

    def kept(rule: dict[str, Any]) -> tuple[set[str], Any]:
        result = _report(engine, grouping=["campaign"], filters=[rule])
        assert result.totals is not None
        return {row.labels["campaign"] for row in result.rows}, result.totals.values["clicks"]

    assert kept({"name": "profit", "operator": "gt", "value": 5}) == ({"Alpha"}, 3)
    assert kept({"name": "clicks", "operator": "lt", "value": 3}) == ({"Beta"}, 2)
    assert kept({"name": "roi", "operator": "between", "values": [100, "200"]}) == ({"Beta"}, 2)
    assert kept({"name": "profit", "operator": "between", "values": [4.5, 4.5]}) == ({"Beta"}, 2)
    assert kept({"name": "cpa", "operator": "gt", "value": 0}) == ({"Alpha", "Beta"}, 5)


def test_sort_limit_offset_and_truncation(engine: Engine) -> None:
    """Sort on a metric or a dimension either way; the page says when rows were left out."""
    _seed(engine)
    by_profit = _report(
        engine, grouping=["campaign"], sort=[{"name": "profit", "order": "asc"}], limit=1
    )
    assert [row.labels["campaign"] for row in by_profit.rows] == ["Beta"]
    assert (by_profit.total_rows, by_profit.truncated) == (2, True)
    second = _report(
        engine,
        grouping=["campaign"],
        sort=[{"name": "profit", "order": "asc"}],
        limit=1,
        offset=1,
    )
    assert [row.labels["campaign"] for row in second.rows] == ["Alpha"]
    assert (second.total_rows, second.truncated) == (2, False)
    past = _report(engine, grouping=["campaign"], limit=1, offset=5)
    assert (past.rows, past.total_rows) == ([], 2)
    named = _report(engine, grouping=["campaign"], sort=[{"name": "campaign", "order": "desc"}])
    assert [row.labels["campaign"] for row in named.rows] == ["Beta", "Alpha"]
    roi = _report(engine, grouping=["country"], sort=[{"name": "roi", "order": "desc"}])
    # Without cost (k4, no country) ROI is empty and sorts last either way.
    assert roi.rows[-1].dimensions["country"] == "" and roi.rows[-1].values["roi"] is None
    default = _report(engine, grouping=["country"])
    assert [row.dimensions["country"] for row in default.rows] == ["DE", "", "FR", "US"]


def test_comparison_with_the_previous_period(engine: Engine) -> None:
    """Each row and the totals carry the same-length period before, and the change in %."""
    _seed(engine)
    result = _report(engine, grouping=["campaign"], metrics=["clicks", "cost", "roi"], compare=True)
    assert result.previous_range == (date(2026, 3, 24), date(2026, 3, 27))
    alpha, beta = (
        {row.labels["campaign"]: row for row in result.rows}[name] for name in ("Alpha", "Beta")
    )
    assert alpha.previous == {"clicks": 1, "cost": Decimal("0.5"), "roi": Decimal("-100.00")}
    assert alpha.change is not None
    assert alpha.change["clicks"] == Decimal("200.00")
    assert alpha.change["cost"] == Decimal("20.00")
    assert beta.previous == {"clicks": 0, "cost": 0, "roi": None}
    assert beta.change == {"clicks": None, "cost": None, "roi": None}
    assert result.totals is not None and result.totals.previous is not None
    assert result.totals.previous["clicks"] == 1
    as_json = result.as_dict()
    assert as_json["rows"][0]["change"]["clicks"] is not None or as_json["rows"][1]["change"]


def test_no_grouping_is_one_row(engine: Engine) -> None:
    """Without grouping the report is one row, even over an empty range."""
    _seed(engine)
    empty = _report(engine, range={"from": "2025-01-01", "to": "2025-01-02"})
    assert len(empty.rows) == 1 and empty.rows[0].values["clicks"] == 0
    assert empty.rows[0].values["roi"] is None


def test_presets_count_from_today_in_the_zone(engine: Engine) -> None:
    """Presets are local dates: at 23:30 UTC on 31 March it is already April in Berlin."""
    types = known_types([])
    late = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)
    for preset, expected in (
        ("today", (date(2026, 4, 1), date(2026, 4, 1))),
        ("yesterday", (date(2026, 3, 31), date(2026, 3, 31))),
        ("last_7_days", (date(2026, 3, 26), date(2026, 4, 1))),
        ("last_30_days", (date(2026, 3, 3), date(2026, 4, 1))),
        ("this_month", (date(2026, 4, 1), date(2026, 4, 1))),
        ("last_month", (date(2026, 3, 1), date(2026, 3, 31))),
    ):
        query = parse_query(
            {"range": {"preset": preset}},
            now=late,
            default_timezone="Europe/Berlin",
            conversion_types=types,
        )
        assert (query.date_from, query.date_to) == expected


def test_a_statement_past_its_limit_is_stopped(engine: Engine) -> None:
    """The report's connection stops a statement past the timeout, on both databases."""
    slow = text(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000000) "
        "SELECT count(*) FROM n"
    )
    with pytest.raises(InvalidInput) as caught, report_connection(engine, 0.2) as conn:
        conn.execute(slow)
    assert caught.value.field == "range"


def test_a_report_on_postgresql_sorts_and_hashes_in_memory(engine: Engine) -> None:
    """A report's transaction on PostgreSQL gives each sort or hash 64 MB, not the default
    4 MB (the month's 283k zones at 10M clicks were sorted on disk), and no JIT; the setting
    ends with the report."""
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's work_mem")
    with report_connection(engine, 0) as conn:
        assert conn.exec_driver_sql("SHOW work_mem").scalar_one() == "64MB"
        assert conn.exec_driver_sql("SHOW jit").scalar_one() == "off"
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW work_mem").scalar_one() == "4MB"
