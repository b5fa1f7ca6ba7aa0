"""Configuration use cases: creating entities, validation, import, the config snapshot."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from clickloop.catalog.templates import load_catalog
from clickloop.errors import Conflict, InvalidInput, NotFound
from clickloop.services import entities
from clickloop.services.config import load_config
from clickloop.services.importer import import_document, read_document
from clickloop.storage import tables as t

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_campaign_snapshot_has_offer_url_with_network_params(engine: Engine) -> None:
    """The hot-path snapshot joins the network's offer parameters to the offer URL."""
    source = entities.create_traffic_source(
        engine, name="Src", now=NOW, parameters=[{"name": "external_id", "param": "cid"}]
    )
    network = entities.create_affiliate_network(
        engine, name="Net", now=NOW, offer_params="&sub1={subid}"
    )
    offer = entities.create_offer(
        engine,
        name="Offer",
        url="https://offer.test/lp?a=1",
        now=NOW,
        affiliate_network_id=network,
        payout="1.25",
        currency="eur",
    )
    entities.create_campaign(
        engine,
        name="Camp",
        alias="camp-1",
        now=NOW,
        offers=[(offer, 100)],
        traffic_source_id=source,
    )
    config = load_config(engine)
    campaign = config.campaigns["camp-1"]
    assert campaign.active and campaign.fields_by_param == {"cid": "external_id"}
    assert config.offers[offer].url == "https://offer.test/lp?a=1&sub1={subid}"
    assert config.offers[offer].payout == Decimal("1.25")
    assert config.offers[offer].currency == "EUR"
    assert config.version > 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"alias": "api"}, "alias"),
        ({"alias": "has space"}, "alias"),
        ({"alias": "x" * 65}, "alias"),
        ({"cost_model": "cpm"}, "cost_model"),
        ({"status": "deleted"}, "status"),
        ({"name": ""}, "name"),
        ({"cost_value": "abc"}, "cost_value"),
        ({"postbacks": [{"url": "javascript:alert(1)"}]}, "postbacks.url"),
        ({"postbacks": [{"url": "https://a.test/\r\nX: y"}]}, "postbacks.url"),
    ],
)
def test_campaign_validation(engine: Engine, fields: dict[str, object], field: str) -> None:
    """Every bad campaign field is refused with the field named, and nothing is written."""
    offer = entities.create_offer(engine, name="O", url="https://o.test/", now=NOW)
    values: dict[str, object] = {"name": "C", "alias": "c", "offers": [(offer, 1)]} | fields
    with pytest.raises(InvalidInput) as error:
        entities.create_campaign(engine, now=NOW, **values)
    assert error.value.field == field
    assert _count(engine, t.campaigns) == 0


def test_duplicate_alias_is_a_conflict(engine: Engine) -> None:
    """Two campaigns cannot share a link."""
    entities.create_campaign(engine, name="A", alias="same", now=NOW, offers=[])
    with pytest.raises(Conflict):
        entities.create_campaign(engine, name="B", alias="same", now=NOW, offers=[])


def test_unknown_offer_is_not_found(engine: Engine) -> None:
    """A campaign cannot point at an offer that does not exist, and leaves nothing behind."""
    with pytest.raises(NotFound):
        entities.create_campaign(engine, name="A", alias="a", now=NOW, offers=[(999, 1)])
    assert _count(engine, t.campaigns) == 0


CATALOG = load_catalog()


def test_import_is_all_or_nothing(engine: Engine, tmp_path: Path) -> None:
    """A document with one bad entry creates nothing; a good one creates everything."""
    good = tmp_path / "setup.yaml"
    good.write_text(
        """
traffic_sources:
  - name: PropellerAds
    parameters: [{name: external_id, param: visitor_id, macro: "${SUBID}"}]
    postback_url: "https://ad.propellerads.com/conversion.php?visitor_id={external_id}"
affiliate_networks:
  - name: Admitad
    offer_params: "&subid={subid}"
offers:
  - {name: Shop, url: "https://shop.test/", affiliate_network: Admitad, payout: "3.5"}
campaigns:
  - name: Launch
    alias: launch
    traffic_source: PropellerAds
    offers: [{name: Shop, weight: 100}]
"""
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("alias: launch", "alias: 'no good'"))
    with pytest.raises(InvalidInput):
        import_document(engine, read_document(bad), now=NOW, catalog=CATALOG)
    assert _count(engine, t.traffic_sources) == 0
    created = import_document(engine, read_document(good), now=NOW, catalog=CATALOG)
    assert [(r.section, r.action) for r in created][-1] == ("campaigns", "created")
    assert load_config(engine).campaigns["launch"].traffic_source_id is not None


@pytest.mark.parametrize(
    ("content", "suffix"),
    [
        ("[1, 2]", ".json"),
        ("{", ".json"),
        ("a: [", ".yaml"),
        ("widgets: []", ".yaml"),
        ("campaigns: 3", ".yaml"),
    ],
)
def test_bad_documents_are_refused(
    engine: Engine, tmp_path: Path, content: str, suffix: str
) -> None:
    """Garbage import files get a clear InvalidInput, never a traceback."""
    path = tmp_path / f"doc{suffix}"
    path.write_text(content)
    with pytest.raises(InvalidInput):
        import_document(engine, read_document(path), now=NOW, catalog=CATALOG)


def test_rotating_the_postback_key(engine: Engine) -> None:
    """Rotation replaces the key and bumps the config version for every node."""
    before = load_config(engine)
    key = entities.rotate_postback_key(engine)
    after = load_config(engine)
    assert key == after.postback_key != before.postback_key
    assert after.version > before.version


@pytest.mark.parametrize("stored", ["campaign_cpc", "click_cost"])
def test_currency_stays_once_any_amount_is_stored(engine: Engine, stored: str) -> None:
    """A CPC price or a click cost is money in the tracker currency: the change is refused whole."""
    offer = entities.create_offer(engine, name="O", url="https://o.test/", now=NOW)
    campaign = entities.create_campaign(
        engine,
        name="C",
        alias="c",
        now=NOW,
        offers=[(offer, 1)],
        cost_model="cpc" if stored == "campaign_cpc" else "cpc_param",
        cost_value="0.25" if stored == "campaign_cpc" else "0",
    )
    assert entities.update_settings(engine, {"timezone": "Europe/Berlin"})["currency"] == "USD"
    if stored == "click_cost":
        with engine.begin() as conn:
            conn.execute(
                insert(t.clicks).values(
                    subid="s1", created_at=NOW, campaign_id=campaign, cost=Decimal("0.1")
                )
            )
    with pytest.raises(InvalidInput, match="stays USD"):
        entities.update_settings(engine, {"currency": "eur", "timezone": "UTC"})
    settings = entities.get_settings(engine)
    assert (settings["currency"], settings["timezone"]) == ("USD", "Europe/Berlin")


def test_a_masked_url_read_back_is_refused(engine: Engine) -> None:
    """A postback URL still holding *** (as the API shows it) cannot overwrite the stored one."""
    source = entities.create_traffic_source(
        engine, name="S", now=NOW, postback_url="https://s.example/pb?token=real&c={external_id}"
    )
    with pytest.raises(InvalidInput, match="postback_url"):
        entities.update_entity(
            engine,
            "traffic_sources",
            source,
            {"postback_url": "https://s.example/pb?token=***&c={external_id}"},
            now=NOW,
        )
    stored = entities.get_entity(engine, "traffic_sources", source)["postback_url"]
    assert stored == "https://s.example/pb?token=real&c={external_id}"
    with pytest.raises(InvalidInput, match=r"postbacks\.url"):
        entities.create_campaign(
            engine,
            name="C",
            alias="c",
            now=NOW,
            postbacks=[{"url": "https://crm.example/h?key=***", "statuses": ["sale"]}],
        )
