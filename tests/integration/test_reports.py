"""Reports aggregate clicks and conversions exactly, by group, in the report time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from clickloop.domain.costs import click_cost
from clickloop.errors import InvalidInput
from clickloop.services import entities, postbacks
from clickloop.services.postbacks import RawPostback
from clickloop.services.reports import build_report
from clickloop.storage import report_cubes
from clickloop.storage import tables as t
from tests.postback_world import add_clicks, make_world

NOW = datetime(2026, 3, 1, tzinfo=UTC)
POSTED = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def _seed(engine: Engine) -> int:
    offer = entities.create_offer(engine, name="O", url="https://o.test/", now=NOW)
    campaign = entities.create_campaign(
        engine, name="Spring", alias="spring", now=NOW, offers=[(offer, 1)]
    )
    clicks = [
        # 23:30 UTC on 28 March is already 29 March in Berlin (UTC+1 before the DST switch).
        ("a1", datetime(2026, 3, 28, 23, 30, tzinfo=UTC), "DE", Decimal("0.10")),
        ("a2", datetime(2026, 3, 28, 10, 0, tzinfo=UTC), "US", Decimal("0.10")),
        ("a3", datetime(2026, 3, 29, 12, 0, tzinfo=UTC), "DE", Decimal("0.30")),
    ]
    conversions = [
        ("a1", "sale", Decimal("10.50"), datetime(2026, 3, 29, 8, 0, tzinfo=UTC)),
        ("a2", "lead", Decimal("4"), datetime(2026, 3, 28, 11, 0, tzinfo=UTC)),
        ("a3", "rejected", Decimal("3"), datetime(2026, 3, 29, 13, 0, tzinfo=UTC)),
    ]
    with engine.begin() as conn:
        for subid, at, country, cost in clicks:
            conn.execute(
                insert(t.clicks).values(
                    subid=subid,
                    created_at=at,
                    campaign_id=campaign,
                    offer_id=offer,
                    country=country,
                    cost=cost,
                    sub_id_2="zone-7",
                )
            )
        for subid, kind, payout, at in conversions:
            conn.execute(
                insert(t.conversions).values(
                    subid=subid,
                    tid="",
                    type=kind,
                    original_status=kind,
                    payout=payout,
                    currency="USD",
                    original_payout=payout,
                    original_currency="USD",
                    rate="1",
                    campaign_id=campaign,
                    offer_id=offer,
                    params={},
                    converted_at=at,
                    created_at=at,
                    updated_at=at,
                )
            )
    report_cubes.rebuild(engine)  # as the writers would have kept them
    return campaign


def test_day_report_in_a_time_zone(engine: Engine) -> None:
    """Days are local: a click at 23:30 UTC lands on the next Berlin day; money is exact."""
    _seed(engine)
    report = build_report(
        engine,
        group_by="day",
        date_from=date(2026, 3, 28),
        date_to=date(2026, 3, 30),
        timezone="Europe/Berlin",
        currency="USD",
    )
    by_day = {row.key: row for row in report.rows}
    assert [row.key for row in report.rows] == ["2026-03-28", "2026-03-29", "2026-03-30"]
    assert by_day["2026-03-28"].clicks == 1 and by_day["2026-03-29"].clicks == 2
    assert by_day["2026-03-29"].revenue == Decimal("10.50")
    assert by_day["2026-03-28"].revenue_by_type == {"lead": Decimal("4")}
    assert by_day["2026-03-30"].clicks == 0
    totals = report.totals
    assert (totals.clicks, totals.cost, totals.revenue) == (3, Decimal("0.50"), Decimal("10.50"))
    assert totals.profit == Decimal("10.00") and totals.roi == Decimal("2000.00")
    assert totals.cr == Decimal("100.00") and totals.epc == Decimal("3.5000")


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        ("country", {"DE": (2, 2), "US": (1, 1)}),
        ("campaign", {"Spring": (3, 3)}),
        ("sub_id_2", {"zone-7": (3, 3)}),
    ],
)
def test_grouped_reports(
    engine: Engine, group_by: str, expected: dict[str, tuple[int, int]]
) -> None:
    """Conversions join their click for click-level groups such as country and sub_id_N."""
    _seed(engine)
    report = build_report(
        engine,
        group_by=group_by,
        date_from=date(2026, 3, 1),
        date_to=date(2026, 3, 31),
        timezone="UTC",
        currency="USD",
    )
    got = {row.label: (row.clicks, sum(row.conversions.values())) for row in report.rows}
    assert got == expected


@pytest.mark.parametrize(
    "bad",
    [
        {"group_by": "planet"},
        {"timezone": "Mars/Olympus"},
        {"date_from": date(2026, 3, 2), "date_to": date(2026, 3, 1)},
        {"date_from": date(1, 1, 1), "date_to": date(1, 1, 2)},
    ],
)
def test_bad_report_arguments(engine: Engine, bad: dict[str, object]) -> None:
    """Invalid groupings, zones and ranges are refused with the field named."""
    args: dict[str, object] = {
        "group_by": "day",
        "date_from": date(2026, 3, 1),
        "date_to": date(2026, 3, 2),
        "timezone": "UTC",
        "currency": "USD",
    }
    with pytest.raises(InvalidInput):
        build_report(engine, **(args | bad))  # type: ignore[arg-type]


def _post(engine: Engine, query: str) -> None:
    request = RawPostback(received_at=POSTED, method="GET", query=query)
    with engine.begin() as conn:
        postbacks.process_postback(conn, request, postbacks.load_rules(conn), now=POSTED)


def test_postback_cost_replaces_the_click_cost_once(engine: Engine) -> None:
    """A postback's `cost` overwrites the click's: every click and its conversions cost once."""
    world = make_world(engine)
    add_clicks(engine, world, ["c1", "c2", "c3", "c4"], offer_id=world.plain_offer_id)
    with engine.begin() as conn:
        conn.execute(update(t.clicks).where(t.clicks.c.subid == "c3").values(cost=Decimal("0.3")))
        conn.execute(update(t.clicks).where(t.clicks.c.subid == "c4").values(cost=Decimal("0.3")))
    report_cubes.rebuild(engine)  # the clicks above were written around the writer
    _post(engine, "subid=c1&status=approved&payout=10&cost=2")
    # Two actions on one click (two tids), and the first one re-sent with a new cost.
    _post(engine, "subid=c2&status=approved&payout=10&cost=2&tid=a")
    _post(engine, "subid=c2&status=approved&payout=10&cost=1.5&tid=b")
    _post(engine, "subid=c2&status=approved&payout=10&cost=3&tid=a")
    # A CPC click: the postback's cost replaces the CPC price.
    _post(engine, "subid=c3&status=approved&payout=10&cost=1")
    report = build_report(
        engine,
        group_by="campaign",
        date_from=date(2026, 11, 1),
        date_to=date(2026, 11, 30),
        timezone="UTC",
        currency="USD",
    )
    totals = report.totals
    # c1: 2, c2: 3 + 1.5, c3: 1, c4 (no conversion): 0.3.
    assert (totals.revenue, totals.cost) == (Decimal(40), Decimal("7.8"))
    assert totals.profit == Decimal("32.2")
    [row] = report.rows
    assert (row.cost, row.profit) == (totals.cost, totals.profit)
    # The SQL is the domain definition: the same figure from the stored rows, click by click.
    with engine.connect() as conn:
        recorded = dict(conn.execute(select(t.clicks.c.subid, t.clicks.c.cost)).all())
        carried = conn.execute(select(t.conversions.c.subid, t.conversions.c.cost)).all()
    by_domain = sum(
        (
            click_cost(cost, [c for s, c in carried if s == subid])
            for subid, cost in recorded.items()
        ),
        Decimal(0),
    )
    assert by_domain == totals.cost


def test_the_one_level_report_reads_a_marked_dimensions_cube(engine: Engine) -> None:
    """GET /api/v1/reports, the dashboard and the campaign list run through build_report, which
    is not handed the settings: a marked sub_id_2 is still read from its spans of days."""
    _seed(engine)
    entities.update_settings(engine, {"report_marked_dimensions": ["sub_id_2"]})
    report_cubes.rebuild(engine)
    report = build_report(
        engine,
        group_by="sub_id_2",
        date_from=date(2026, 3, 28),
        date_to=date(2026, 3, 29),
        timezone="UTC",
        currency="USD",
    )
    assert report.source == "aggregates:marked_spans"
    assert [(row.key, row.clicks) for row in report.rows] == [("zone-7", 3)]
