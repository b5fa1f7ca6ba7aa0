"""Postbacks through the real use case queue S2S deliveries in the same transaction."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.services import postbacks as service
from clickloop.services.postbacks import RawPostback
from clickloop.storage import tables as t
from tests.postback_world import World, add_clicks, make_world

NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
def world(engine: Engine) -> World:
    """The postback world, its campaign bought from a source with an S2S URL and a CRM hook."""
    world = make_world(engine)
    source = entities.create_traffic_source(
        engine,
        name="Source",
        now=NOW,
        postback_url="https://ts.example/pb?cid={subid}&st={status}&p={payout}&k={keyword}",
    )
    with engine.begin() as conn:
        conn.execute(
            update(t.campaigns)
            .where(t.campaigns.c.id == world.campaign_id)
            .values(traffic_source_id=source)
        )
        conn.execute(
            t.campaign_postbacks.insert().values(
                campaign_id=world.campaign_id,
                url="https://crm.example/hook?s={status}&c={campaign_name}",
                method="POST",
                statuses=["sale"],
                enabled=True,
                created_at=NOW,
            )
        )
    add_clicks(engine, world, ["pl1"], offer_id=world.plain_offer_id)
    return world


def post(engine: Engine, query: str) -> str:
    raw = RawPostback(received_at=NOW, method="GET", query=query)
    with engine.begin() as conn:
        return str(service.process_postback(conn, raw, service.load_rules(conn), now=NOW).outcome)


def sent(engine: Engine) -> list[tuple[str, str, str | None]]:
    with engine.connect() as conn:
        d = t.deliveries
        query = select(d.c.method, d.c.url, d.c.body).order_by(d.c.id)
        return [(row.method, row.url, row.body) for row in conn.execute(query)]


def test_duplicates_do_not_resend_and_changes_do(engine: Engine, world: World) -> None:
    """A repeated postback queues nothing; a new payout or status queues the new state."""
    assert post(engine, "subid=pl1&status=lead&payout=1") == "accepted"
    assert post(engine, "subid=pl1&status=lead&payout=1") == "duplicate"
    assert sent(engine) == [("GET", "https://ts.example/pb?cid=pl1&st=lead&p=1&k=original", None)]
    assert post(engine, "subid=pl1&status=lead&payout=2") == "updated"
    assert post(engine, "subid=pl1&status=approved&payout=2") == "updated"
    assert sent(engine)[1:] == [
        ("GET", "https://ts.example/pb?cid=pl1&st=lead&p=2&k=original", None),
        ("GET", "https://ts.example/pb?cid=pl1&st=sale&p=2&k=original", None),
        ("POST", "https://crm.example/hook", "s=sale&c=Camp"),
    ]


def test_ignored_postback_queues_nothing(engine: Engine, world: World) -> None:
    """A postback that is ignored (unknown status) sends no S2S."""
    assert post(engine, "subid=pl1&status=whatever") == "ignored"
    assert sent(engine) == []
