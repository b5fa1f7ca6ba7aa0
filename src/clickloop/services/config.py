"""The in-memory snapshot of configuration that the click and postback hot paths read.

It is rebuilt whole when `config_version` changes (polled about once a second), so a change made
on any node reaches every node without a database read per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from clickloop.domain.clicks import (
    ParameterRow,
    WeightedOffer,
    fields_by_param,
    join_offer_params,
)
from clickloop.services.entities import read_settings
from clickloop.storage import tables as t
from clickloop.storage.db import reader_engine


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferView:
    id: int
    name: str
    url: str  # with the network's offer parameters appended
    affiliate_network_id: int | None
    currency: str
    payout: Decimal
    upsell: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignView:
    id: int
    name: str
    alias: str
    active: bool
    traffic_source_id: int | None
    cost_model: str
    cost_value: Decimal
    offers: tuple[WeightedOffer, ...]
    fields_by_param: dict[str, str]  # the traffic source's mapping, see map_params


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackerConfig:
    version: int
    settings: dict[str, Any]
    campaigns: dict[str, CampaignView]  # by alias
    offers: dict[int, OfferView]

    @property
    def postback_key(self) -> str:
        return str(self.settings["postback_key"])


def load_config(engine: Engine) -> TrackerConfig:
    with reader_engine(engine).connect() as conn:
        settings = read_settings(conn)
        networks = {row.id: row for row in conn.execute(select(t.affiliate_networks))}
        sources = {row.id: row for row in conn.execute(select(t.traffic_sources))}
        offers: dict[int, OfferView] = {}
        for row in conn.execute(select(t.offers)):
            network = networks.get(row.affiliate_network_id)
            offers[row.id] = OfferView(
                id=row.id,
                name=row.name,
                url=join_offer_params(row.url, network.offer_params if network else ""),
                affiliate_network_id=row.affiliate_network_id,
                currency=row.currency,
                payout=row.payout,
                upsell=row.upsell,
            )
        weights: dict[int, list[WeightedOffer]] = {}
        for row in conn.execute(select(t.campaign_offers).where(t.campaign_offers.c.active)):
            weights.setdefault(row.campaign_id, []).append(
                WeightedOffer(offer_id=row.offer_id, weight=row.weight)
            )
        campaigns: dict[str, CampaignView] = {}
        for row in conn.execute(select(t.campaigns)):
            source = sources.get(row.traffic_source_id)
            campaigns[row.alias] = CampaignView(
                id=row.id,
                name=row.name,
                alias=row.alias,
                # Archived or paused: the link answers 404 (nothing recorded).
                active=row.status == "active" and row.archived_at is None,
                traffic_source_id=row.traffic_source_id,
                cost_model=row.cost_model,
                cost_value=row.cost_value,
                offers=tuple(weights.get(row.id, ())),
                fields_by_param=fields_by_param(
                    ParameterRow(name=p["name"], param=p["param"], macro=p.get("macro", ""))
                    for p in (source.parameters if source else [])
                ),
            )
    return TrackerConfig(
        version=int(settings["config_version"]),
        settings=settings,
        campaigns=campaigns,
        offers=offers,
    )
