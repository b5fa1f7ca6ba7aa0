"""The demo campaign of `clickloop init --demo`."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.services.config import load_config
from clickloop.services.demo import DEMO_OFFER_NAME, ensure_demo_campaign

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def demo_offer_url(engine: Engine) -> str:
    offers = entities.list_rows(engine, "offers")
    return str(next(o["url"] for o in offers if o["name"] == DEMO_OFFER_NAME))


def test_a_later_init_on_another_address_moves_the_demo_offer(engine: Engine) -> None:
    """`make run` again on another port: the demo link and its offer page follow the port."""
    first = ensure_demo_campaign(engine, base_url="http://127.0.0.1:8080", now=NOW)
    assert first.startswith("http://127.0.0.1:8080/demo?")
    assert demo_offer_url(engine).startswith("http://127.0.0.1:8080/_demo/offer?")
    version = load_config(engine).version
    second = ensure_demo_campaign(engine, base_url="http://127.0.0.1:9090", now=NOW)
    assert second.startswith("http://127.0.0.1:9090/demo?")
    assert demo_offer_url(engine).startswith("http://127.0.0.1:9090/_demo/offer?")
    assert load_config(engine).version > version
    assert len(entities.list_rows(engine, "campaigns")) == 1


def test_a_demo_offer_the_user_pointed_elsewhere_is_left_alone(engine: Engine) -> None:
    """Once the user sends the demo offer to a real page, a later init does not touch it."""
    ensure_demo_campaign(engine, base_url="http://127.0.0.1:8080", now=NOW)
    offer = next(o for o in entities.list_rows(engine, "offers") if o["name"] == DEMO_OFFER_NAME)
    entities.update_entity(engine, "offers", offer["id"], {"url": "https://mine.test/"}, now=NOW)
    ensure_demo_campaign(engine, base_url="http://127.0.0.1:9090", now=NOW)
    assert demo_offer_url(engine) == "https://mine.test/"
