"""A small tracker set-up for postback tests: a network with trainings, two offers, clicks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.services.rates import set_rate
from clickloop.storage import tables as t

CREATED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class World:
    network_id: int
    upsell_offer_id: int  # upsell allowed, default payout 5 EUR
    plain_offer_id: int  # no upsell, default payout 2 USD
    campaign_id: int


def make_world(engine: Engine) -> World:
    """Network `Net` trains approved→sale and declined→rejected; tracker currency is USD."""
    network = entities.create_affiliate_network(
        engine,
        name="Net",
        now=CREATED,
        offer_params="sub1={subid}",
        status_trainings={"sale": ["approved"], "rejected": ["declined"]},
    )
    upsell = entities.create_offer(
        engine,
        name="Upsell offer",
        url="https://offer.test/a",
        now=CREATED,
        affiliate_network_id=network,
        payout="5",
        currency="EUR",
        upsell=True,
    )
    plain = entities.create_offer(
        engine,
        name="Plain offer",
        url="https://offer.test/b",
        now=CREATED,
        affiliate_network_id=network,
        payout="2",
        currency="USD",
    )
    campaign = entities.create_campaign(
        engine, name="Camp", alias="camp", now=CREATED, offers=[(upsell, 50), (plain, 50)]
    )
    return World(
        network_id=network, upsell_offer_id=upsell, plain_offer_id=plain, campaign_id=campaign
    )


def add_clicks(engine: Engine, world: World, subids: list[str], *, offer_id: int) -> None:
    """Clicks as the click hot path would have stored them."""
    with engine.begin() as conn:
        conn.execute(
            insert(t.clicks),
            [
                {
                    "subid": subid,
                    "created_at": CREATED,
                    "campaign_id": world.campaign_id,
                    "offer_id": offer_id,
                    "keyword": "original",
                    "sub_id_1": "zone1",
                }
                for subid in subids
            ],
        )


def make_world_with_clicks(engine: Engine, *, now: datetime) -> World:
    """The world, a USD rate of 1.1, and clicks up1/up2 on the upsell offer, pl1/pl2 on the
    plain one."""
    world = make_world(engine)
    set_rate(engine, "USD", "1.1", now=now)
    add_clicks(engine, world, ["up1", "up2"], offer_id=world.upsell_offer_id)
    add_clicks(engine, world, ["pl1", "pl2"], offer_id=world.plain_offer_id)
    return world
