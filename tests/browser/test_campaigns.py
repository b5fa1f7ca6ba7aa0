"""The campaign list and a campaign's page in headless Chromium, at 1366x900 and 390x844: period,
sort, search, copy link without clipboard permission, bulk pause, clone, archive and restore,
a bad sort's 422 page; no console errors or CSP violations on the way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.storage import report_cubes
from clickloop.storage import tables as t
from tests.browser.conftest import SCREENSHOTS, log_in
from tests.conftest import Server

pytestmark = pytest.mark.slow

VIEWPORTS = {"laptop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}


@pytest.fixture
def server_env() -> dict[str, str]:
    return {"CLICKLOOP_EMBEDDED_WORKER": "false"}


def _shoot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    for label, size in VIEWPORTS.items():
        page.set_viewport_size(size)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(VIEWPORTS["laptop"])


def _seed(engine: Engine) -> dict[str, int]:
    """Two campaigns with traffic now: "Leads" (4 clicks at 0.25, three 12.00 leads) and "Sales"
    (2 clicks at 2.00, a 1,500.00 sale), and "Quiet" without any; a CRM postback on Leads."""
    now = datetime.now(UTC)
    offer = entities.create_offer(engine, name="Offer", url="https://offer.test/", now=now)
    source = entities.create_traffic_source(
        engine,
        name="Push",
        now=now,
        parameters=[{"name": "external_id", "param": "clickid", "macro": "{click_id}"}],
    )
    ids = {
        name: entities.create_campaign(
            engine,
            name=name,
            alias=name.lower(),
            traffic_source_id=source,
            offers=[(offer, 100)],
            postbacks=[{"url": "https://crm.test/pb?s={status}&token=SECRET1"}]
            if name == "Leads"
            else [],
            now=now,
        )
        for name in ("Leads", "Sales", "Quiet")
    }
    when = now - timedelta(minutes=5)
    clicks = [
        {"subid": f"{name[0]}{i}", "created_at": when, "campaign_id": ids[name], "offer_id": offer,
         "traffic_source_id": source, "cost": Decimal(cost), "is_unique": True}
        for name, count, cost in (("Leads", 4, "0.25"), ("Sales", 2, "2.00"))
        for i in range(count)
    ]  # fmt: skip
    conversions = [
        {"subid": subid, "tid": "", "type": kind, "original_status": kind,
         "payout": Decimal(payout), "currency": "USD", "original_payout": Decimal(payout),
         "original_currency": "USD", "rate": "1", "campaign_id": ids[name], "offer_id": offer,
         "traffic_source_id": source, "params": {}, "converted_at": when, "created_at": when,
         "updated_at": when}
        for subid, name, kind, payout in (
            ("L0", "Leads", "lead", "12"), ("L1", "Leads", "lead", "12"),
            ("L2", "Leads", "lead", "12"), ("S0", "Sales", "sale", "1500"),
        )
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(t.clicks), clicks)
        conn.execute(insert(t.conversions), conversions)
    report_cubes.rebuild(engine)
    return ids


def _page(browser: Any, errors: list[str], *, clipboard: bool) -> Any:
    context = browser.new_context(viewport=VIEWPORTS["laptop"])
    if clipboard:
        context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())
    expected = ("status of 422",)  # the bad sort's page, on purpose
    page.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and not any(e in message.text for e in expected)
            else None
        ),
    )
    return page


def _names(page: Any) -> list[str]:
    return [
        text.strip() for text in page.locator("#campaign-table tbody td.name > a").all_inner_texts()
    ]


def test_campaign_list_as_a_work_screen(admin: Server, engine: Engine, browser: Any) -> None:
    """Period, sort, search; copy a link with no clipboard permission; bulk pause; clone;
    archive and restore; a bad sort column answers a 422 page that leads back."""
    ids = _seed(engine)
    errors: list[str] = []
    page = _page(browser, errors, clipboard=False)
    admin_url = log_in(page, admin)
    page.goto(f"{admin_url}/campaigns")
    assert page.locator(".seg a.on").inner_text() == "7 days"
    leads_row = page.locator("#campaign-table tbody tr", has_text="Leads")
    text = leads_row.inner_text()
    # Pending lead payouts, not lost: profit and ROI count them; money with its sign.
    assert "$36.00" in text and "$1.00" in text and "$35.00" in text and "3,500.00%" in text
    sales_row = page.locator("#campaign-table tbody tr", has_text="Sales").inner_text()
    assert "$1,500.00" in sales_row
    _shoot(page, "40-campaigns")

    page.click(".seg >> text=Yesterday")
    assert "period=yesterday" in page.url
    assert "$0.00" in page.locator("#campaign-table tfoot").inner_text()
    page.click(".seg >> text=Today")
    page.click("#campaign-table th >> text=ROI")
    assert _names(page) == ["Sales", "Leads", "Quiet"]  # 37,400 % and 3,500 %; none last
    page.click("#campaign-table th >> text=ROI")
    assert _names(page) == ["Leads", "Sales", "Quiet"]  # ascending; no ROI stays last
    page.click("#campaign-table th >> text=Name")
    assert _names(page) == ["Leads", "Quiet", "Sales"]
    page.fill("input[name=q]", "sal")
    page.click("#campaign-filters button:has-text('Show')")
    assert _names(page) == ["Sales"] and "sort=name" in page.url
    page.click("text=Reset")

    # Copy a row's link: the clipboard permission is not granted, the selection copy works.
    button = page.locator("#campaign-table tbody tr", has_text="Quiet").locator(
        "button[data-copy-text]"
    )
    button.click()
    expect(button).to_have_text("Copied")

    # Bulk pause two campaigns.
    page.check(f"input[name=id][value='{ids['Leads']}']")
    page.check(f"input[name=id][value='{ids['Quiet']}']")
    assert "2 ticked" in page.inner_text("#bulk-count")
    page.click("#bulk button:has-text('Pause')")
    assert "2 of 2 campaign(s) paused" in page.inner_text(".flash")
    assert page.locator("#campaign-table td.name .b-paused").count() == 2
    _shoot(page, "41-campaigns-bulk-paused")

    # Clone from the campaign's page; archive the clone; find it under archived; restore it.
    page.click("#campaign-table tbody >> a:text-is('Sales')")
    page.click("button:has-text('Clone')")
    assert "Cloned as “Sales (copy)”" in page.inner_text(".flash")
    page.click("button:has-text('Archive')")
    assert "archived" in page.inner_text(".flash")
    page.goto(f"{admin_url}/campaigns")
    assert "Sales (copy)" not in _names(page)
    page.select_option("select[name=state]", "archived")
    page.click("#campaign-filters button:has-text('Show')")
    assert _names(page) == ["Sales (copy)"]
    _shoot(page, "42-campaigns-archived")
    page.click("#campaign-table button:has-text('Restore')")
    assert "restored, paused" in page.inner_text(".flash")
    assert _names(page) == []  # back among active and paused, not archived
    page.click("text=Show every campaign")
    assert "Sales (copy)" in _names(page)

    response = page.goto(f"{admin_url}/campaigns?sort=owner")
    assert response is not None and response.status == 422
    assert "“sort” is invalid" in page.inner_text("main")
    page.click("a:has-text('Show this page without filters')")
    expect(page).to_have_url(f"{admin_url}/campaigns")
    assert errors == []


def test_campaign_page(admin: Server, engine: Engine, browser: Any) -> None:
    """A campaign's page: its link with the source's parameters (copied with the clipboard
    allowed), offers and weights, its S2S postback masked with its health, its report by day
    drilling into Reports with the campaign filter."""
    ids = _seed(engine)
    errors: list[str] = []
    page = _page(browser, errors, clipboard=True)
    admin_url = log_in(page, admin)
    page.goto(f"{admin_url}/campaigns/{ids['Leads']}")
    link = page.input_value("#campaign-link")
    assert link == f"{admin.base_url}/leads?clickid={{click_id}}"
    page.click("[data-copy=campaign-link]")
    assert page.evaluate("navigator.clipboard.readText()") == link
    main = page.inner_text("main")
    assert "clickid" in main and "{click_id}" in main and "external_id" in main
    health = page.inner_text("#s2s-health")
    assert "idle" in health and "crm.test" in health and "SECRET1" not in health
    report = page.inner_text("#campaign-report")
    assert "$36.00" in report and "3,500.00%" in report
    _shoot(page, "43-campaign-page")
    page.click("#campaign-report tbody a")
    assert page.url.startswith(f"{admin_url}/reports?")
    assert "sub_id_1" in page.url.replace("%22", "") and "campaign" in page.inner_text(".chips")
    page.go_back()
    page.click("text=Open report")
    assert "Leads" in page.inner_text(".chips")
    page.goto(f"{admin_url}/campaigns/{ids['Leads']}/edit")
    assert page.input_value("input[name=alias]") == "leads"
    _shoot(page, "44-campaign-edit")
    assert errors == []
