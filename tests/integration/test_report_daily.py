"""Which cube answers: the daily cubes serve the report zone they are kept in (whole local days,
no hour), the hourly ones any other whole-hour zone until `reports rebuild` moves the daily
cubes to the new zone, and the answer names the table."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, insert
from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.services.report_builder import run_report
from clickloop.services.report_query import known_types, parse_query
from clickloop.services.reports import build_report
from clickloop.storage import report_cubes
from clickloop.storage import tables as t

NOW = datetime(2026, 3, 1, tzinfo=UTC)
DAY = datetime(2026, 3, 10, 21, 30, tzinfo=UTC)  # 22:30 in Berlin, 03:00 next day in Kolkata


@pytest.fixture(autouse=True, scope="module")
def _no_rezone_wait() -> Any:
    """One process writes here: nothing to wait for when the daily cubes change zone."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report_cubes, "REZONE_WAIT", 0)
        yield


@pytest.fixture
def campaign(engine: Engine) -> int:
    campaign = entities.create_campaign(engine, name="One", alias="one", now=NOW)
    rows = [
        {
            "subid": f"c{n}",
            "created_at": DAY + timedelta(hours=n),
            "campaign_id": campaign,
            "country": ("DE", "US")[n % 2],
            "device_type": "mobile",
            "is_unique": True,
            "cost": Decimal("0.5"),
        }
        for n in range(6)
    ]
    with engine.begin() as conn:
        conn.execute(insert(t.clicks), rows)
    report_cubes.rebuild(engine)
    return campaign


def report(engine: Engine, zone: str, grouping: list[str], **more: Any) -> tuple[str, Any]:
    """(the answer's source, its rows) of the report on the cubes, checked against raw."""
    query = parse_query(
        {
            "range": {"from": "2026-03-09", "to": "2026-03-12", "timezone": zone},
            "grouping": grouping,
            "metrics": ["clicks", "cost"],
            **more,
        },
        now=NOW,
        default_timezone="UTC",
        conversion_types=known_types([]),
    )
    settings = entities.get_settings(engine)
    answer = run_report(engine, query, settings=settings).as_dict()
    raw = run_report(engine, query, settings=settings, path="raw").as_dict()
    assert answer | {"source": "raw"} == raw
    return answer["source"], answer["rows"]


def test_the_smallest_daily_cube_answers_in_its_zone(engine: Engine, campaign: int) -> None:
    assert report(engine, "UTC", ["day"])[0] == "aggregates:daily_device_totals"
    assert report(engine, "UTC", ["campaign"])[0] == "aggregates:daily_campaigns"
    assert report(engine, "UTC", ["country"])[0] == "aggregates:daily_country_totals"
    assert report(engine, "UTC", ["device_type", "week"])[0] == "aggregates:daily_device_totals"
    by_campaign = [{"name": "campaign", "operator": "equals", "value": str(campaign)}]
    assert report(engine, "UTC", ["country"], filters=by_campaign)[0] == (
        "aggregates:daily_campaign_countries"
    )
    # The network is the offer's: a cube without the offer cannot tell it.
    by_network = [{"name": "affiliate_network", "operator": "is_empty"}]
    assert report(engine, "UTC", ["campaign", "country"], filters=by_network)[0] == (
        "aggregates:daily_countries"
    )
    # Geo by device over all traffic and by campaign; with the source, none.
    assert report(engine, "UTC", ["country", "device_type"])[0] == (
        "aggregates:daily_country_device_totals"
    )
    assert report(engine, "UTC", ["country", "device_type"], filters=by_campaign)[0] == (
        "aggregates:daily_campaign_country_devices"
    )
    assert report(engine, "UTC", ["traffic_source", "country", "device_type"])[0] == "raw"
    assert report(engine, "UTC", ["country", "os"])[0] == ("aggregates:daily_audience_totals")
    assert report(engine, "UTC", ["language", "browser"])[0] == "aggregates:daily_audience_totals"
    assert report(engine, "UTC", ["campaign", "device_type"])[0] == (
        "aggregates:daily_campaign_devices"
    )
    # The hours of day are in the dayparted cubes, and so the hours: a day's hours of day.
    assert report(engine, "UTC", ["hour_of_day"])[0] == "aggregates:daypart_totals"
    assert report(engine, "UTC", ["day_of_week", "hour_of_day"])[0] == ("aggregates:daypart_totals")
    assert report(engine, "UTC", ["hour_of_day", "country"])[0] == "aggregates:daypart_countries"
    assert report(engine, "UTC", ["hour_of_day", "country", "device_type"])[0] == (
        "aggregates:daypart_country_devices"
    )
    assert report(engine, "UTC", ["offer", "hour_of_day"])[0] == "aggregates:daypart_campaigns"
    assert report(engine, "UTC", ["os", "hour_of_day"])[0] == "aggregates:daypart_devices"
    assert report(engine, "UTC", ["hour_of_day"], filters=by_campaign)[0] == (
        "aggregates:daypart_campaigns"
    )
    assert report(engine, "UTC", ["hour"])[0] == "aggregates:totals"
    assert report(engine, "UTC", ["hour", "country"])[0] == "aggregates:daypart_countries"
    assert report(engine, "UTC", ["os", "hour"])[0] == "aggregates:daypart_devices"
    assert report(engine, "UTC", ["hour", "language"])[0] == "aggregates:daypart_languages"
    assert report(engine, "UTC", ["hour", "browser"], filters=by_campaign)[0] == (
        "aggregates:devices"
    )


def test_another_zone_reads_hourly_cubes_until_a_rebuild(engine: Engine, campaign: int) -> None:
    entities.update_settings(engine, {"timezone": "Europe/Berlin"})
    assert report(engine, "Europe/Berlin", ["day"])[0] == "aggregates:totals"
    assert report(engine, "UTC", ["day"])[0] == "aggregates:daily_device_totals"
    report_cubes.rebuild(engine, hourly=False)
    source, rows = report(engine, "Europe/Berlin", ["day"])
    assert source == "aggregates:daily_device_totals"
    assert [(row["dimensions"]["day"], row["metrics"]["clicks"]) for row in rows] == [
        ("2026-03-10", 2),
        ("2026-03-11", 4),
    ]
    assert report(engine, "UTC", ["day"])[0] == "aggregates:totals"
    # The local hours of day, summed from the hourly cubes.
    source, rows = report(engine, "Europe/Berlin", ["hour_of_day", "campaign"])
    assert source == "aggregates:daypart_campaigns"
    assert [row["dimensions"]["hour_of_day"] for row in rows] == ["0", "1", "2", "3", "22", "23"]
    # The dashboard and the campaign list pass only the currency: the zone comes from the base.
    shown = build_report(
        engine,
        group_by="day",
        date_from=date(2026, 3, 10),
        date_to=date(2026, 3, 11),
        timezone="UTC",
        currency="USD",
    )
    assert shown.source == "aggregates:totals"
    assert [(row.key, row.clicks) for row in shown.rows] == [("2026-03-10", 3), ("2026-03-11", 3)]


def test_a_half_hour_zone_reads_daily_cubes_or_raw(engine: Engine, campaign: int) -> None:
    """Kolkata's days start at 18:30 UTC: no hourly cube holds them, the daily ones do."""
    assert report(engine, "Asia/Kolkata", ["day"])[0] == "raw"
    entities.update_settings(engine, {"timezone": "Asia/Kolkata"})
    report_cubes.rebuild(engine)
    source, rows = report(engine, "Asia/Kolkata", ["day"])
    assert source == "aggregates:daily_device_totals"
    assert [row["dimensions"]["day"] for row in rows] == ["2026-03-11"]
    assert date.fromisoformat(rows[0]["dimensions"]["day"]).day == 11
    # Its local hours: the one-day spans of the dayparted cubes.
    source, rows = report(engine, "Asia/Kolkata", ["hour", "campaign"])
    assert source == "aggregates:daypart_campaigns"
    assert rows and all(row["dimensions"]["hour"].startswith("2026-03-11T") for row in rows)


def test_a_new_zone_keeps_the_days_of_pruned_clicks(engine: Engine, campaign: int) -> None:
    """Moving the daily cubes to another whole-hour zone sums the hourly cubes, which keep the
    history of clicks `prune` removed."""
    with engine.begin() as conn:
        conn.execute(delete(t.clicks))
    entities.update_settings(engine, {"timezone": "Europe/Berlin"})
    report_cubes.rebuild(engine, hourly=False)
    query = parse_query(
        {
            "range": {"from": "2026-03-09", "to": "2026-03-12", "timezone": "Europe/Berlin"},
            "grouping": ["day"],
            "metrics": ["clicks"],
        },
        now=NOW,
        default_timezone="UTC",
        conversion_types=known_types([]),
    )
    answer = run_report(engine, query, settings=entities.get_settings(engine))
    assert answer.source == "aggregates:daily_device_totals"
    assert [(row.dimensions["day"], row.values["clicks"]) for row in answer.rows] == [
        ("2026-03-10", 2),
        ("2026-03-11", 4),
    ]


def test_days_after_2038_read_the_daily_cubes(engine: Engine) -> None:
    """A daily cube's local seconds (day * 86400) pass 2^31 on 2038-01-19: PostgreSQL computed
    them in 32 bits and refused the report ("integer out of range")."""
    later = datetime(2038, 3, 1, 12, tzinfo=UTC)
    campaign = entities.create_campaign(engine, name="Later", alias="later", now=later)
    with engine.begin() as conn:
        conn.execute(
            insert(t.clicks), {"subid": "x1", "created_at": later, "campaign_id": campaign}
        )
    report_cubes.rebuild(engine)
    query = parse_query(
        {"range": {"from": "2038-03-01", "to": "2038-03-01"}, "grouping": ["day", "hour_of_day"]},
        now=later,
        default_timezone="UTC",
        conversion_types=known_types([]),
    )
    settings = entities.get_settings(engine)
    answer = run_report(engine, query, settings=settings)
    assert answer.source == "aggregates:daypart_totals"
    assert [row.dimensions for row in answer.rows] == [{"day": "2038-03-01", "hour_of_day": "12"}]
    raw = run_report(engine, query, settings=settings, path="raw")
    assert answer.as_dict() | {"source": "raw"} == raw.as_dict()
