"""The services behind the admin work screens: a manual status change through the postback rules,
the clicks log's filters, conversions by time, a conversion's history and the deliveries filters,
on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from clickloop.errors import InvalidInput, NotFound
from clickloop.services import entities, postbacks, queries
from clickloop.services.postbacks import RawPostback
from clickloop.storage import tables as t
from tests.postback_world import CREATED, World, add_clicks, make_world

NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
def world(engine: Engine) -> World:
    """The postback world with a CRM hook for sales on its campaign and a click `pl1`."""
    world = make_world(engine)
    with engine.begin() as conn:
        conn.execute(
            t.campaign_postbacks.insert().values(
                campaign_id=world.campaign_id,
                url="https://crm.example/hook?s={status}",
                method="GET",
                statuses=["sale"],
                enabled=True,
                created_at=NOW,
            )
        )
    add_clicks(engine, world, ["pl1"], offer_id=world.plain_offer_id)
    return world


def post(engine: Engine, query: str, when: datetime = NOW) -> postbacks.PostbackResult:
    raw = RawPostback(received_at=when, method="GET", query=query)
    with engine.begin() as conn:
        return postbacks.process_postback(conn, raw, postbacks.load_rules(conn), now=when)


def deliveries_of(engine: Engine, conversion_id: int) -> list[str]:
    with engine.connect() as conn:
        d = t.deliveries.c
        rows = conn.execute(select(d.url).where(d.conversion_id == conversion_id).order_by(d.id))
        return [row.url for row in rows]


def test_manual_sale_goes_through_the_rules_logs_manual_and_queues_s2s(
    engine: Engine, world: World
) -> None:
    """Lead -> sale by hand updates the conversion, is logged as MANUAL with the user, and queues
    the sale's S2S postback; the payout and the conversion time are kept."""
    lead = post(engine, "subid=pl1&tid=t1&status=lead&payout=3")
    assert lead.conversion_id is not None and deliveries_of(engine, lead.conversion_id) == []
    later = NOW + timedelta(hours=1)
    result = postbacks.change_status(
        engine, lead.conversion_id, "sale", user="admin:alice", now=later
    )
    assert (result.outcome, result.conversion_id) == ("updated", lead.conversion_id)
    conversion = queries.get_conversion(engine, lead.conversion_id)
    assert (conversion["type"], conversion["payout"]) == ("sale", Decimal(3))
    assert conversion["converted_at"] == NOW
    assert deliveries_of(engine, lead.conversion_id) == ["https://crm.example/hook?s=sale"]
    logged = queries.conversion_history(engine, "pl1", lead.conversion_id)
    assert [row["method"] for row in logged] == ["GET", "MANUAL"]
    assert "from=admin%3Aalice" in logged[1]["query"] and "tid=t1" in logged[1]["query"]
    assert logged[1]["remote_ip"] is None and logged[1]["outcome"] == "updated"


def test_manual_lead_after_a_sale_is_stale_and_changes_nothing(
    engine: Engine, world: World
) -> None:
    """A manual lead after a sale is refused by the same rule as a late network lead, logged as
    ignored, and the conversion and its S2S stay as they were; a repeat is a duplicate."""
    sale = post(engine, "subid=pl1&status=sale")
    assert sale.conversion_id is not None
    before = queries.get_conversion(engine, sale.conversion_id)
    result = postbacks.change_status(engine, sale.conversion_id, "lead", user="admin:bob", now=NOW)
    assert (result.outcome, result.reason) == ("ignored", "stale status: lead after sale")
    assert queries.get_conversion(engine, sale.conversion_id) == before
    again = postbacks.change_status(engine, sale.conversion_id, "sale", user="admin:bob", now=NOW)
    assert again.outcome == "duplicate"
    assert len(deliveries_of(engine, sale.conversion_id)) == 1
    rejected = postbacks.change_status(
        engine, sale.conversion_id, "rejected", user="admin:bob", now=NOW
    )
    assert rejected.outcome == "updated"
    assert queries.get_conversion(engine, sale.conversion_id)["type"] == "rejected"


def test_manual_status_means_its_type_whatever_the_saved_training_says(
    engine: Engine, world: World
) -> None:
    """A network training that claims the word `sale` for another type does not turn a manual
    "sale" into that type."""
    entities.update_entity(
        engine,
        "affiliate_networks",
        world.network_id,
        {"status_trainings": {"rejected": ["sale"]}},
        now=NOW,
    )
    lead = post(engine, "subid=pl1&status=lead")
    assert lead.conversion_id is not None
    postbacks.change_status(engine, lead.conversion_id, "sale", user="admin:a", now=NOW)
    assert queries.get_conversion(engine, lead.conversion_id)["type"] == "sale"


def test_manual_status_refuses_unknown_ids_and_words(engine: Engine, world: World) -> None:
    """An unknown conversion is NotFound; a word outside lead/sale/rejected names `status`;
    neither writes a log row."""
    with pytest.raises(NotFound):
        postbacks.change_status(engine, 999, "sale", user="admin:a", now=NOW)
    lead = post(engine, "subid=pl1&status=lead")
    assert lead.conversion_id is not None
    with pytest.raises(InvalidInput) as refused:
        postbacks.change_status(engine, lead.conversion_id, "rebill", user="admin:a", now=NOW)
    assert refused.value.field == "status"
    assert len(queries.list_received_postbacks(engine).items) == 1


def test_conversions_are_listed_by_conversion_time_across_pages(
    engine: Engine, world: World
) -> None:
    """A postback dated in the past lists its conversion by that date, not by its id, and
    walking the pages gives every conversion once, newest first (ties by id)."""
    add_clicks(engine, world, [f"c{n}" for n in range(5)], offer_id=world.plain_offer_id)
    for n, hours in enumerate([5, 1, 3, 3, 0]):
        when = int((NOW - timedelta(hours=hours)).timestamp())
        post(engine, f"subid=c{n}&status=lead&date={when}")
    order, cursor = [], None
    while True:
        page = queries.list_conversions(engine, limit=2, cursor=cursor)
        order += [row["subid"] for row in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert order == ["c4", "c1", "c3", "c2", "c0"]
    with pytest.raises(InvalidInput):
        queries.list_conversions(engine, cursor="12")


def test_clicks_log_filters(engine: Engine, world: World) -> None:
    """Source, external id, country and a time range narrow the log; pages continue by subid."""
    source = entities.create_traffic_source(engine, name="Src", now=NOW)
    rows = [
        {"subid": f"k{n}", "created_at": CREATED + timedelta(minutes=n), "campaign_id": 1}
        | {"traffic_source_id": source if n % 2 else None, "external_id": f"x{n % 3}"}
        | {"country": "DE" if n < 3 else "FR"}
        for n in range(6)
    ]
    with engine.begin() as conn:
        conn.execute(insert(t.clicks), rows)
        conn.execute(
            update(t.clicks)
            .where(t.clicks.c.subid.like("k%"))
            .values(campaign_id=world.campaign_id)
        )

    def subids(**filters: object) -> list[str]:
        return [row["subid"] for row in queries.search_clicks(engine, **filters).items]

    assert subids(traffic_source_id=source) == ["k5", "k3", "k1"]
    assert subids(external_id="x0") == ["k3", "k0"]
    assert subids(country="de") == ["k2", "k1", "k0"]
    window = {"since": CREATED + timedelta(minutes=2), "until": CREATED + timedelta(minutes=4)}
    assert subids(**window) == ["k3", "k2"]
    assert subids(campaign_id=world.campaign_id, country="FR") == ["k5", "k4", "k3"]
    first = queries.search_clicks(engine, country="FR", limit=2)
    assert first.next_cursor == "k4"
    rest = queries.search_clicks(engine, country="FR", limit=2, cursor=first.next_cursor)
    assert [row["subid"] for row in rest.items] == ["k3"]


def test_deliveries_filter_by_target_and_date(engine: Engine, world: World) -> None:
    """Deliveries narrow to one target and to the days they were queued in."""
    sale = post(engine, "subid=pl1&status=sale")
    assert sale.conversion_id is not None
    with engine.connect() as conn:
        target = conn.execute(select(t.campaign_postbacks.c.id)).scalar_one()
    found = queries.list_deliveries(engine, target_kind="campaign_postback", target_id=target)
    assert len(found.items) == 1
    assert queries.list_deliveries(engine, target_id=target + 1).items == []
    assert len(queries.list_deliveries(engine, since=NOW, until=NOW + timedelta(days=1)).items) == 1
    assert queries.list_deliveries(engine, since=NOW + timedelta(days=1)).items == []
