"""The work screens in headless Chromium: a conversion, its click and back; a manual lead -> sale
that queues S2S; an upload with a bad line; the postback URL builder's saved training once;
no console errors or CSP violations on the way."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.storage import tables as t
from tests.browser.conftest import log_in
from tests.browser.test_admin_loop import VIEWPORTS, _shoot_everywhere
from tests.conftest import Server
from tests.integration.test_work_screens import post
from tests.postback_world import add_clicks, make_world

pytestmark = pytest.mark.slow

NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
def server_env() -> dict[str, str]:
    # Queued deliveries stay "new" for the page to show (no dispatcher sends them away).
    return {"CLICKLOOP_EMBEDDED_WORKER": "false"}


def _page(browser: Any, errors: list[str]) -> Any:
    page = browser.new_context(viewport=VIEWPORTS["laptop"]).new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())
    # CSP violations and failed loads show up as console errors; the unknown click's page is a
    # 404 on purpose nowhere here, so every error counts.
    page.on(
        "console",
        lambda message: errors.append(message.text) if message.type == "error" else None,
    )
    return page


def test_conversion_click_manual_sale_and_upload(
    admin: Server, engine: Engine, browser: Any
) -> None:
    """From the conversions list to a conversion, to its click and back; a manual sale queues
    the campaign's S2S postback (shown as "new"); an upload shows the bad line's reason."""
    world = make_world(engine)
    with engine.begin() as conn:
        conn.execute(
            t.campaign_postbacks.insert().values(
                campaign_id=world.campaign_id,
                url="https://crm.example/hook?s={status}&token=SECRET123",
                method="GET",
                statuses=["sale"],
                enabled=True,
                created_at=NOW,
            )
        )
    add_clicks(engine, world, ["pl1", "pl2"], offer_id=world.plain_offer_id)
    lead = post(engine, "subid=pl1&tid=t1&status=lead&payout=3")
    errors: list[str] = []
    page = _page(browser, errors)
    admin_url = log_in(page, admin)

    page.click("nav >> text=Conversions")
    page.click(f"a[href='/admin/conversions/{lead.conversion_id}'] >> nth=0")
    assert page.url == f"{admin_url}/conversions/{lead.conversion_id}"
    assert "status=lead" in page.inner_text("main")
    _shoot_everywhere(page, "31-conversion")
    page.click("dd >> a:has-text('pl1')")
    assert page.url == f"{admin_url}/clicks/pl1"
    main = page.inner_text("main")
    assert "zone1" in main and "original" in main and "Plain offer" in main
    _shoot_everywhere(page, "32-click")
    page.go_back()
    assert page.url == f"{admin_url}/conversions/{lead.conversion_id}"

    page.select_option("select[name=status]", "sale")
    page.click("button:has-text('Change status')")
    main = page.inner_text("main")
    assert "Status set to sale" in main and "MANUAL" in main and "from=admin%3Aadmin" in main
    s2s = page.locator("h2:has-text('Sent postbacks') + .table-scroll").inner_text()
    assert "new" in s2s and "SECRET123" not in s2s and "crm.example" in s2s
    _shoot_everywhere(page, "33-conversion-sold")

    page.click("nav >> text=Clicks")
    assert "pl2" in page.inner_text("main")
    _shoot_everywhere(page, "34-clicks")

    page.goto(f"{admin_url}/conversions/upload")
    page.fill("textarea[name=text]", "subid,payout,tid,status\npl2,7.5,,sale\nmissing,1,,sale\n")
    page.click("button:has-text('Preview')")
    assert "2 lines to import" in page.inner_text("main")
    _shoot_everywhere(page, "35-upload-preview")
    page.click("button:has-text('Import 2 lines')")
    table = page.locator("table").inner_text()
    assert "accepted" in table and "subid not found: missing" in table
    _shoot_everywhere(page, "36-upload-result")
    assert errors == []


def test_builder_adds_the_saved_training_once(admin: Server, engine: Engine, browser: Any) -> None:
    """A network whose postback parameters carry `lead_status` gets one `lead_status` (the saved
    one) when the saved training is added to its postback URL."""
    network = entities.create_affiliate_network(
        engine,
        name="Template Net",
        now=NOW,
        postback_params="subid={sub1}&status={status}&lead_status=reg,dep&sale_status=approve",
        status_trainings={"lead": ["reg"], "sale": ["approve", "rebill"], "rejected": ["reject"]},
    )
    errors: list[str] = []
    page = _page(browser, errors)
    admin_url = log_in(page, admin)
    page.goto(f"{admin_url}/affiliate-networks/{network}")
    page.check("input[name=trainings]")
    page.click("button:has-text('Update URL')")
    url = page.input_value("#postback-url")
    query = url.split("?", 1)[1].split("&")
    names = [part.split("=")[0] for part in query]
    assert sorted(names) == ["lead_status", "rejected_status", "sale_status", "status", "subid"]
    assert "lead_status=reg" in query and "sale_status=approve,rebill" in query
    assert errors == []
