"""Every admin page on a 390 px phone and in the system's dark mode, in headless Chromium: the
page never scrolls sideways (wide tables scroll inside their box), the compact navigation
reaches every section, dark mode changes the colours and keeps every text readable (WCAG
contrast 4.5), with no console errors or CSP violations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from clickloop.services import entities, saved_reports
from clickloop.storage import tables as t
from tests.browser.conftest import SCREENSHOTS, log_in
from tests.conftest import Server
from tests.integration.test_work_screens import post

pytestmark = pytest.mark.slow

PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1366, "height": 900}
NOW = datetime.now(UTC).replace(microsecond=0)
LONG = "x" * 90  # an unbreakable value as networks send them (ids, tokens)

# The width of the page's content, and of the viewport (a page that scrolls sideways has more).
PAGE_WIDTH = "[document.scrollingElement.scrollWidth, window.innerWidth]"

# Every visible text's colour against the background it is drawn on (the first opaque
# background among its ancestors), as a WCAG contrast ratio; the lowest ones first.
CONTRASTS = """() => {
  const rgb = (text) => text.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const backdrop = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const bg = rgb(getComputedStyle(e).backgroundColor);
      if (bg.length < 4 || bg[3] === 1) return bg.slice(0, 3);
    }
    return rgb(getComputedStyle(document.documentElement).backgroundColor || "rgb(255,255,255)");
  };
  const seen = [];
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.checkVisibility()) continue;
    const style = getComputedStyle(el);
    const a = lum(rgb(style.color).slice(0, 3)), b = lum(backdrop(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    seen.push({ratio: Math.round(ratio * 100) / 100, tag: el.tagName, cls: el.className,
                text: el.textContent.trim().slice(0, 30), color: style.color});
  }
  return seen.sort((x, y) => x.ratio - y.ratio);
}"""

COLOURS = """() => {
  const s = getComputedStyle(document.body);
  return [s.backgroundColor, s.color];
}"""


def _seed(engine: Engine) -> dict[str, str]:
    """A source, a network, offers, campaigns, clicks with long values, conversions, received
    postbacks (one ignored) and queued S2S deliveries; the pages that show them."""
    source = entities.create_traffic_source(
        engine,
        name="Push Source with a rather long name",
        now=NOW,
        parameters=[{"name": "external_id", "param": "clickid", "macro": "{click_id}"}],
        postback_url=f"https://source.example/conversion?clickid={{external_id}}&t={LONG}",
        postback_statuses=["sale"],
    )
    network = entities.create_affiliate_network(
        engine,
        name="Net",
        now=NOW,
        offer_params=f"sub1={{subid}}&token={LONG}",
        postback_params="subid={aff_sub}&status={status}&payout={payout}",
        status_trainings={"lead": ["pending"], "sale": ["approved"], "rejected": ["declined"]},
    )
    offer = entities.create_offer(
        engine,
        name="Offer",
        url=f"https://offer.example/landing?{LONG}",
        now=NOW,
        affiliate_network_id=network,
        payout="12.5",
        currency="USD",
    )
    campaign = entities.create_campaign(
        engine,
        name="Campaign on the push source",
        alias="push",
        now=NOW,
        traffic_source_id=source,
        cost_model="cpc",
        cost_value="0.05",
        offers=[(offer, 100)],
    )
    with engine.begin() as conn:
        conn.execute(
            t.campaign_postbacks.insert().values(
                campaign_id=campaign,
                url=f"https://crm.example/hook?s={{status}}&k={LONG}",
                method="GET",
                statuses=["lead", "sale"],
                enabled=True,
                created_at=NOW,
            )
        )
        conn.execute(
            insert(t.clicks),
            [
                {
                    "subid": f"sub{n}",
                    "created_at": NOW - timedelta(hours=n + 1),
                    "campaign_id": campaign,
                    "traffic_source_id": source,
                    "offer_id": offer,
                    "external_id": f"ext{n}{LONG}",
                    "user_agent": "Mozilla/5.0 (Linux; Android 14) " + LONG,
                    "country": "DE",
                    "cost": "0.05",
                    "sub_id_1": LONG,
                }
                for n in range(6)
            ],
        )
    lead = post(engine, f"subid=sub1&status=pending&payout=3&tid={LONG}", NOW)
    post(engine, "subid=sub2&status=approved&payout=12.5", NOW)
    post(engine, f"subid=missing&status=approved&note={LONG}", NOW)
    saved_reports.create_saved(
        engine, name="By campaign", query={"grouping": ["campaign"]}, now=NOW
    )
    with engine.connect() as conn:
        delivery = conn.execute(t.deliveries.select().limit(1)).first()
    assert delivery is not None and lead.conversion_id is not None
    return {
        "dashboard": "/",
        "campaigns": "/campaigns",
        "campaign": f"/campaigns/{campaign}",
        "campaign-new": "/campaigns/new",
        "traffic-sources": "/traffic-sources",
        "traffic-source": f"/traffic-sources/{source}",
        "traffic-source-new": "/traffic-sources/new?template=trident",
        "traffic-source-template": "/traffic-sources/new?template=exoclick",
        "networks": "/affiliate-networks",
        "network": f"/affiliate-networks/{network}?trainings=1",
        "network-new": "/affiliate-networks/new",
        "offers": "/offers",
        "offer": f"/offers/{offer}",
        "offer-new": "/offers/new",
        "clicks": "/clicks",
        "click": "/clicks/sub1",
        "conversions": "/conversions",
        "conversion": f"/conversions/{lead.conversion_id}",
        "upload": "/conversions/upload",
        "received": "/received-postbacks",
        "deliveries": "/deliveries",
        "delivery": f"/deliveries/{delivery.id}",
        "reports": "/reports?preset=last_7_days&g=campaign&compare=1&apply=1",
        "settings": "/settings",
        "not-found": "/campaigns/999999",
        "no-such-page": "/no-such-page",
        "bad-filter": "/clicks?from=yesterday",
    }


@pytest.fixture
def server_env() -> dict[str, str]:
    # Deliveries stay queued: nothing sends them away to the example hosts.
    return {"CLICKLOOP_EMBEDDED_WORKER": "false"}


def _logged_in_page(browser: Any, admin: Server, errors: list[str]) -> Any:
    page = browser.new_context(viewport=PHONE).new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # CSP violations and failed loads are console errors; the error pages' own statuses are not.
    expected = ("status of 404", "status of 422")
    page.on(
        "console",
        lambda message: (
            errors.append(f"{page.url}: {message.text}")
            if message.type == "error" and not any(e in message.text for e in expected)
            else None
        ),
    )
    log_in(page, admin)
    return page


def _shoot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"layout-{name}.png"), full_page=True)


SHOWN = ("dashboard", "clicks", "conversion", "deliveries", "reports", "settings", "not-found")


def test_every_page_fits_a_phone_and_the_menu_reaches_every_section(
    admin: Server, engine: Engine, browser: Any
) -> None:
    """At 390 by 844 no admin page is wider than the screen; the menu button shows every section
    link inside the screen, and each opens its page."""
    pages = _seed(engine)
    errors: list[str] = []
    page = _logged_in_page(browser, admin, errors)
    admin_url = f"{admin.base_url}/admin"
    too_wide = {}
    for name, path in pages.items():
        page.goto(admin_url + path)
        width, viewport = page.evaluate(PAGE_WIDTH)
        if width > viewport:
            too_wide[name] = width
        if name in SHOWN:
            _shoot(page, f"{name}-phone")
    assert too_wide == {}
    # Wide tables keep their width and scroll inside their box.
    page.goto(admin_url + pages["deliveries"])
    box = page.locator(".table-scroll").first
    assert box.evaluate("(el) => el.scrollWidth > el.clientWidth")

    page.goto(admin_url + "/")
    links = page.locator("nav.side a")
    assert links.count() >= 11
    assert not links.first.is_visible()
    page.click("text=Menu")
    _shoot(page, "menu-phone")
    labels = links.all_inner_texts()
    for label in labels:
        link = page.locator("nav.side a", has_text=label).first
        box = link.bounding_box()
        assert link.is_visible() and box is not None, label
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], label
    assert page.evaluate(PAGE_WIDTH)[0] <= PHONE["width"]
    page.locator("nav.side a", has_text="Sent postbacks").click()
    assert page.url == f"{admin_url}/deliveries"
    assert not page.locator("nav.side a").first.is_visible()
    page.set_viewport_size(LAPTOP)
    assert page.locator("nav.side a").first.is_visible()
    assert not page.locator("text=Menu").is_visible()
    assert errors == []


def test_dark_mode_follows_the_system_and_stays_readable(
    admin: Server, engine: Engine, browser: Any
) -> None:
    """With the system in dark mode (emulated, as Chromium's Emulation.setEmulatedMedia does)
    the pages turn dark, and every text on them, light or dark, has a contrast of 4.5 or more."""
    pages = _seed(engine)
    errors: list[str] = []
    page = _logged_in_page(browser, admin, errors)
    page.set_viewport_size(LAPTOP)
    admin_url = f"{admin.base_url}/admin"
    light = page.evaluate(COLOURS)
    page.emulate_media(color_scheme="dark")
    dark = page.evaluate(COLOURS)
    assert dark[0] != light[0] and dark[1] != light[1]
    unreadable = {}
    for scheme in ("dark", "light"):
        page.emulate_media(color_scheme=scheme)
        for name, path in pages.items():
            page.goto(admin_url + path)
            low = [seen for seen in page.evaluate(CONTRASTS) if seen["ratio"] < 4.5]
            if low:
                unreadable[f"{scheme} {name}"] = low[:5]
            if scheme == "dark" and name in SHOWN:
                _shoot(page, f"{name}-dark")
                page.set_viewport_size(PHONE)
                _shoot(page, f"{name}-dark-phone")
                page.set_viewport_size(LAPTOP)
            elif name in SHOWN:
                _shoot(page, f"{name}-laptop")
    # Logged out: the log-in page and an error page without a session.
    page.click("button:has-text('Log out')")
    for scheme in ("dark", "light"):
        page.emulate_media(color_scheme=scheme)
        for path in ("/login", "/no-such-page"):
            page.goto(admin_url + path)
            low = [seen for seen in page.evaluate(CONTRASTS) if seen["ratio"] < 4.5]
            if low:
                unreadable[f"{scheme} {path}"] = low[:5]
    assert unreadable == {}
    assert errors == []
