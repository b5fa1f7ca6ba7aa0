"""The demo campaign that `clickloop init --demo` creates, so a first run can be clicked through."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.services.config import TrackerConfig
from clickloop.services.postbacks import PostbackResult, RawPostback, load_rules, process_postback
from clickloop.storage import tables as t

DEMO_ALIAS = "demo"
DEMO_OFFER_PATH = "/_demo/offer"
DEMO_PAYOUT = "12.50"
DEMO_OFFER_NAME = "Demo offer"


def ensure_demo_campaign(engine: Engine, *, base_url: str, now: datetime) -> str:
    """Create the demo source, network, offer and campaign once (a later call moves the demo
    offer to `base_url`, e.g. another port); return the campaign link."""
    offer_url = f"{base_url}{DEMO_OFFER_PATH}?zone={{sub_id_1}}"
    with engine.begin() as conn:
        exists = conn.execute(select(t.campaigns.c.id).where(t.campaigns.c.alias == DEMO_ALIAS))
        if exists.first() is not None:
            demo_offer = conn.execute(
                select(t.offers.c.id).where(
                    t.offers.c.name == DEMO_OFFER_NAME, t.offers.c.url.contains(DEMO_OFFER_PATH)
                )
            ).scalar()
            if demo_offer is not None:
                entities.change_entity(conn, "offers", demo_offer, {"url": offer_url}, now=now)
        else:
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
                name=DEMO_OFFER_NAME,
                url=offer_url,
                now=now,
                affiliate_network_id=network,
                payout=DEMO_PAYOUT,
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


def demo_is_set_up(config: TrackerConfig) -> bool:
    """Whether the demo campaign exists and sends clicks to the demo offer page."""
    campaign = config.campaigns.get(DEMO_ALIAS)
    if campaign is None:
        return False
    offers = (config.offers.get(weighted.offer_id) for weighted in campaign.offers)
    return any(offer is not None and DEMO_OFFER_PATH in offer.url for offer in offers)


def record_demo_sale(engine: Engine, subid: str, *, now: datetime) -> PostbackResult | None:
    """Report a sale of a demo click the way its network's postback would; None for any other.

    The demo offer page calls this instead of linking the postback URL, which would show the
    postback key to whoever follows the demo link.
    """
    clicks, offers, campaigns = t.clicks.c, t.offers.c, t.campaigns.c
    with engine.connect() as conn:
        demo_click = conn.execute(
            select(clicks.subid)
            .join(t.campaigns, campaigns.id == clicks.campaign_id)
            .join(t.offers, offers.id == clicks.offer_id)
            .where(
                clicks.subid == subid[:24],
                campaigns.alias == DEMO_ALIAS,
                offers.url.contains(DEMO_OFFER_PATH),
            )
        ).first()
        if demo_click is None:
            return None
        rules = load_rules(conn)
    query = urlencode({"subid": demo_click.subid, "status": "sale", "payout": DEMO_PAYOUT})
    raw = RawPostback(received_at=now, method="DEMO", query=query)
    with engine.begin() as conn:
        return process_postback(conn, raw, rules, now=now)
