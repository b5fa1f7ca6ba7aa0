"""The exchange-rates and users pages in headless Chromium at 1366x900: a rate set by hand and an
update from a local ECB; an analyst added, reading without buttons to change anything, and
logged out at once when disabled; no console errors or CSP violations on the way."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from tests.browser.conftest import ADMIN_USER, SCREENSHOTS, log_in
from tests.conftest import Server, http_endpoint
from tests.integration.test_rate_updates import XML

pytestmark = pytest.mark.slow

LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
ANALYST_PASSWORD = "analyst-pass-42"


@pytest.fixture
def ecb_url() -> Iterator[str]:
    def answer(request: BaseHTTPRequestHandler) -> tuple[int, bytes]:
        return 200, XML

    with http_endpoint(answer) as base:
        yield base + "/eurofxref-daily.xml"


@pytest.fixture
def server_env(ecb_url: str) -> dict[str, str]:
    # The daily update stays off: the page's "Update now" does it, in view.
    return {"CLICKLOOP_RATES_URL": ecb_url}


def _page(browser: Any, errors: list[str]) -> Any:
    page = browser.new_context(viewport=LAPTOP).new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())
    page.on(
        "console",
        lambda message: errors.append(message.text) if message.type == "error" else None,
    )
    return page


def _shoot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    for label, size in (("laptop", LAPTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(LAPTOP)


def test_rates_page_sets_by_hand_and_updates_now(admin: Server, browser: Any) -> None:
    """From the navigation to the rates page; RUB set by hand; "Update now" stores the ECB
    rates of the day, shown with their date and origin, and the dashboard tells it."""
    errors: list[str] = []
    page = _page(browser, errors)
    admin_url = log_in(page, admin)
    assert "no ECB update yet" in page.locator("#rates-status").inner_text()
    page.click("nav >> text=Exchange rates")
    assert page.url == f"{admin_url}/rates"
    assert "bundled" in page.locator("tr[data-currency=USD]").inner_text()
    page.fill("#set-rate input[name=currency]", "rub")
    page.fill("#set-rate input[name=per_eur]", "98.5")
    page.click("#set-rate button")
    assert "1 EUR = 98.5 RUB, set by hand." in page.locator(".flash").inner_text()
    assert "by hand" in page.locator("tr[data-currency=RUB]").inner_text()
    page.click("button:has-text('Update now')")
    assert "Stored 3 ECB rates of 2026-11-02" in page.locator(".flash").inner_text()
    usd = page.locator("tr[data-currency=USD]").inner_text()
    assert "1.2" in usd and "2026-11-02" in usd and "ECB" in usd
    assert "rates of 2026-11-02" in page.locator("#rate-updates").inner_text()
    _shoot(page, "rates")
    page.click("nav >> text=Dashboard")
    assert "rates of 2026-11-02" in page.locator("#rates-status").inner_text()
    assert errors == []


def test_users_page_adds_an_analyst_who_reads_until_disabled(admin: Server, browser: Any) -> None:
    """The admin adds an analyst; the analyst sees reports and settings without the buttons
    that change things, and the last admin cannot be disabled; disabled, the analyst's next
    click lands on the login page."""
    errors: list[str] = []
    page = _page(browser, errors)
    admin_url = log_in(page, admin)
    page.click("nav >> text=Users")
    page.fill("#add-user input[name=username]", "ana")
    page.fill("#add-user input[name=password]", ANALYST_PASSWORD)
    page.select_option("#add-user select[name=role]", "analyst")
    page.click("#add-user button")
    assert "User ana added" in page.locator(".flash").inner_text()
    page.click(f"tr[data-user={ADMIN_USER}] button:has-text('Disable')")
    assert "cannot disable the last active admin" in page.locator(".flash").inner_text()
    _shoot(page, "users")

    analyst = _page(browser, errors)
    log_in(analyst, admin, "ana", ANALYST_PASSWORD)
    assert "analyst, read-only" in analyst.locator("header").inner_text()
    analyst.click("nav >> text=Settings")
    assert analyst.locator("button:has-text('Rotate key')").count() == 0
    assert analyst.locator("button:has-text('Save settings')").count() == 0
    analyst.click("nav >> text=Users")
    assert analyst.locator("#add-user").count() == 0
    analyst.click("nav >> text=Exchange rates")
    assert analyst.locator("button:has-text('Update now')").count() == 0
    _shoot(analyst, "rates-analyst")

    page.click("tr[data-user=ana] button:has-text('Disable')")
    assert "sessions ended" in page.locator(".flash").inner_text()
    assert "disabled" in page.locator("tr[data-user=ana]").inner_text()
    analyst.click("nav >> text=Reports")
    assert analyst.url.startswith(f"{admin_url}/login")
    assert errors == []
