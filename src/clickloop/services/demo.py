"""The demo campaign that `clickloop init --demo` creates, so a first run can be clicked through."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.storage import tables as t

DEMO_ALIAS = "demo"


def ensure_demo_campaign(engine: Engine, *, base_url: str, now: datetime) -> str:
    """Create the demo source, network, offer and campaign once; return the campaign link."""
    with engine.begin() as conn:
        exists = conn.execute(select(t.campaigns.c.id).where(t.campaigns.c.alias == DEMO_ALIAS))
        if exists.first() is None:
            source = entities.add_traffic_source(
                conn,
                name="Demo traffic source",
                now=now,
                parameters=[
                    {"name": "external_id", "param": "clickid", "macro": "{click_id}"},
                    {"name": "sub_id_1", "param": "zone", "macro": "{zone}"},
                    {"name": "cost", "param": "cost", "macro": "{cost}"},
                ],
            )
            network = entities.add_affiliate_network(
                conn, name="Demo network", now=now, offer_params="subid={subid}"
            )
            offer = entities.add_offer(
                conn,
                name="Demo offer",
                url=f"{base_url}/_demo/offer?zone={{sub_id_1}}",
                now=now,
                affiliate_network_id=network,
                payout="12.50",
            )
            entities.add_campaign(
                conn,
                name="Demo campaign",
                alias=DEMO_ALIAS,
                now=now,
                offers=[(offer, 100)],
                traffic_source_id=source,
                cost_model="cpc_param",
            )
    return f"{base_url}/{DEMO_ALIAS}?clickid=demo-click-1&zone=42&cost=0.05"
