"""The template picker in a real browser: the datalist it types into, a name instead of a key,
and a choice among several matches."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import Engine

from clickloop.services import entities
from tests.browser.conftest import log_in
from tests.conftest import Server

pytestmark = pytest.mark.slow


def test_picker_takes_what_a_user_types(admin: Server, browser: Any) -> None:
    """Typing "ExoClick" opens ExoClick's form; typing "trident" offers its templates to pick."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    admin_url = log_in(page, admin)
    page.goto(f"{admin_url}/traffic-sources/new")
    picker = page.locator("input[name=template]")
    assert picker.get_attribute("list") == "template-list"
    assert page.locator("#template-list option[value=propellerads]").count() == 1

    picker.fill("ExoClick")
    page.click("button:has-text('Use template')")
    assert "From the template “ExoClick”" in page.inner_text("main")
    assert page.locator("input[name=field_goal_id]").count() == 1

    page.goto(f"{admin_url}/traffic-sources/new")
    page.fill("input[name=template]", "trident")
    page.click("button:has-text('Use template')")
    assert "templates match “trident”" in page.inner_text("main")
    page.click("a:has-text('Trident-media.agency | PWA')")
    assert "From the template “Trident-media.agency | PWA”" in page.inner_text("main")
    assert errors == []


def test_traffic_source_page_sets_a_conversion_api_and_warns_of_an_uncaptured_click_id(
    admin: Server, browser: Any, engine: Engine
) -> None:
    """A source made from a template flagged defective (its S2S sends {external_id}, which no
    row captures) says so on its page; the page's conversion API form makes TikTok's Events API
    its S2S target, the token never shown back, and the warning goes with the old URL."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    admin_url = log_in(page, admin)
    page.goto(f"{admin_url}/traffic-sources/new")
    page.fill("input[name=template]", "avazu_com")
    page.click("button:has-text('Use template')")
    assert "no parameter row captures" in page.inner_text("main")  # the template's defect
    page.click("button:has-text('Create from template')")
    [source] = entities.list_rows(engine, "traffic_sources")
    page.goto(f"{admin_url}/traffic-sources/{source['id']}")
    assert "{external_id}, which no parameter row captures" in page.inner_text("#uncaptured")

    form = page.locator("#conversion-api form")
    form.locator("select[name=platform]").select_option("tiktok")
    form.locator("input[name=pixel_id]").fill("CQ1BROWSER")
    form.locator("input[name=access_token]").fill("tt-browser-secret-1")
    form.locator("input[name=statuses]").fill("sale")
    form.locator("button:has-text('Use this conversion API')").click()
    assert "The S2S target is now the conversion API." in page.inner_text("main")
    assert page.locator("#uncaptured").count() == 0
    assert "tt-browser-secret-1" not in page.content()
    stored = entities.get_entity(engine, "traffic_sources", source["id"])
    assert stored["postback_url"] == "https://business-api.tiktok.com/open_api/v1.3/event/track/"
    assert stored["postback_headers"] == {"Access-Token": "tt-browser-secret-1"}
    assert stored["postback_statuses"] == ["sale"]

    form = page.locator("#conversion-api form")
    form.locator("input[name=pixel_id]").fill("not a pixel")
    form.locator("input[name=access_token]").fill("x")
    form.locator("button:has-text('Use this conversion API')").click()
    assert "pixel_id: required: letters, digits, _ or -" in page.inner_text("main")
    assert errors == []
