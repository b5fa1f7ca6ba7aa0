"""The whole loop through the admin UI in headless Chromium: log in, set up a source, a network,
an offer and a campaign, click the campaign link, fire the network's postback, and watch the
conversion, the received postback, the S2S delivery and the report appear.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from clickloop.catalog.templates import load_catalog
from clickloop.domain.deliveries import TargetKind
from clickloop.storage import tables as t
from clickloop.storage.db import make_engine
from clickloop.storage.outbox import disable_target
from tests.browser.conftest import ADMIN_PASSWORD, ADMIN_USER, SCREENSHOTS, Recorder
from tests.conftest import Server

pytestmark = pytest.mark.slow

VIEWPORTS = {"laptop": {"width": 1366, "height": 800}, "phone": {"width": 390, "height": 844}}


def _shoot_everywhere(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    for label, size in VIEWPORTS.items():
        page.set_viewport_size(size)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(VIEWPORTS["laptop"])


def _reload_until(page: Any, text: str, locator: str = "main") -> None:
    """Reload until `text` shows in `locator` (the dispatcher works in the background)."""
    deadline = time.monotonic() + 20
    while text not in page.locator(locator).inner_text():
        assert time.monotonic() < deadline, f"{text!r} never appeared on {page.url}"
        page.wait_for_timeout(250)
        page.reload()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return str(answer.read().decode())


def test_admin_ui_runs_the_whole_conversion_loop(
    admin: Server, browser: Any, recorder: Recorder
) -> None:
    """Every step of the loop is done or seen in the UI, and each page renders on both screens."""
    context = browser.new_context(viewport=VIEWPORTS["laptop"])
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())
    # CSP violations and failed loads of our own assets show up as console errors; the wrong
    # password's 401 and a refused form's 422 are expected; the offer page has no favicon.
    expected = ("favicon", "status of 401", "status of 422")
    page.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and not any(e in message.text for e in expected)
            else None
        ),
    )
    admin_url = f"{admin.base_url}/admin"

    # Log in (a wrong password first).
    page.goto(f"{admin_url}/")
    assert page.url.startswith(f"{admin_url}/login")
    _shoot_everywhere(page, "01-login")
    page.fill("input[name=username]", ADMIN_USER)
    page.fill("input[name=password]", "not the password")
    page.click("button:has-text('Log in')")
    assert "Wrong username or password." in page.inner_text("main")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button:has-text('Log in')")
    assert page.url == f"{admin_url}/"
    assert "Getting started" in page.inner_text("main")
    _shoot_everywhere(page, "02-dashboard-empty")

    # Settings: S2S may reach the loopback recorder.
    page.click("nav >> text=Settings")
    page.fill("textarea[name=allowed_networks]", "127.0.0.0/8")
    page.click("button:has-text('Save settings')")
    assert "Settings saved." in page.inner_text("main")
    _shoot_everywhere(page, "03-settings")

    # A traffic source from the blank form, with an S2S URL to the recorder for sales.
    page.click("nav >> text=Traffic sources")
    _shoot_everywhere(page, "04-traffic-sources-empty")
    page.click("text=New traffic source")
    _shoot_everywhere(page, "05-traffic-source-new")
    page.fill("input[name=name]", "Push Source")
    rows = page.locator("[data-rows=params] tbody tr")
    rows.nth(0).locator("input[name=param_name]").fill("external_id")
    rows.nth(0).locator("input[name=param_param]").fill("clickid")
    rows.nth(0).locator("input[name=param_macro]").fill("{click_id}")
    page.click("button:has-text('Add parameter')")
    rows.nth(1).locator("input[name=param_name]").fill("sub_id_1")
    rows.nth(1).locator("input[name=param_param]").fill("zone")
    rows.nth(1).locator("input[name=param_macro]").fill("{zone_id}")
    page.fill(
        "input[name=postback_url]",
        f"{recorder.base_url}/s2s?cid={{external_id}}&status={{status}}&payout={{payout}}"
        "&token=SECRET123",
    )
    page.check("input[name=postback_statuses][value=sale]")
    page.click("button:has-text('Create traffic source')")
    assert "Traffic source saved." in page.inner_text("main")
    _shoot_everywhere(page, "06-traffic-source-edit")
    # A refused edit says why and keeps what was typed; nothing is saved.
    s2s_url = page.input_value("input[name=postback_url]")
    page.fill("input[name=postback_url]", "ftp://nowhere.example/")
    page.click("button:has-text('Save traffic source')")
    assert "http(s) URL" in page.inner_text("main")
    assert page.input_value("input[name=postback_url]") == "ftp://nowhere.example/"
    page.fill("input[name=postback_url]", s2s_url)
    page.click("button:has-text('Save traffic source')")
    assert "Traffic source saved." in page.inner_text("main")

    # A network from a template (one without fields), then our own network from the blank form.
    template = next(t for t in load_catalog().affiliate_networks if not t.fields)
    page.goto(f"{admin_url}/affiliate-networks/new")
    page.fill("input[name=template]", template.key)
    page.click("button:has-text('Use template')")
    _shoot_everywhere(page, "07-network-template")
    page.click("button:has-text('Create from template')")
    assert "Network saved." in page.inner_text("main")
    assert template.name in page.inner_text("h1")
    page.click("button:has-text('Re-apply template')")
    assert "nothing changed" in page.inner_text(".flash")
    page.goto(f"{admin_url}/affiliate-networks/new")
    page.fill("input[name=name]", "Test Network")
    page.fill("input[name=offer_params]", "sub1={subid}")
    page.fill("input[name=postback_params]", "subid={sub1}&status={status}&payout={amount}")
    page.fill("input[name=training_sale]", "approved")
    page.click("button:has-text('Create network')")
    assert "Network saved." in page.inner_text("main")
    postback_url = page.input_value("#postback-url")
    assert postback_url.endswith("/postback?subid={sub1}&status={status}&payout={amount}")
    page.check("input[name=trainings]")
    page.fill("input[name=return]", "OK")
    page.click("button:has-text('Update URL')")
    assert page.input_value("#postback-url").endswith("&sale_status=approved&return=OK")
    _shoot_everywhere(page, "08-network-builder")
    page.click("nav >> text=Affiliate networks")
    _shoot_everywhere(page, "09-networks")

    # An offer of that network, landing on the recorder.
    page.click("nav >> text=Offers")
    page.click("text=New offer")
    page.fill("input[name=name]", "Test Offer")
    page.select_option("select[name=affiliate_network_id]", label="Test Network")
    page.fill("input[name=url]", f"{recorder.base_url}/offer?x=1")
    page.fill("input[name=payout]", "7.5")
    page.click("button:has-text('Create offer')")
    assert "Offer saved." in page.inner_text("main")
    assert f"{recorder.base_url}/offer?x=1&sub1={{subid}}" in page.inner_text("main")
    _shoot_everywhere(page, "10-offer-edit")
    page.click("nav >> text=Offers")
    _shoot_everywhere(page, "10-offers-list")

    # A campaign: source, offer, and its link with the source's macros.
    page.click("nav >> text=Campaigns")
    _shoot_everywhere(page, "11-campaigns-empty")
    page.click("text=New campaign")
    page.fill("input[name=name]", "Test Campaign")
    page.fill("input[name=alias]", "admin")
    page.select_option("select[name=traffic_source_id]", label="Push Source")
    page.select_option("select[name=offer_id]", label="Test Offer")
    page.click("button:has-text('Create campaign')")
    # A reserved alias is refused with the reason, and what was typed is kept.
    assert "alias:" in page.inner_text("[role=alert]")
    _shoot_everywhere(page, "12-campaign-error")
    assert page.input_value("input[name=name]") == "Test Campaign"
    page.fill("input[name=alias]", "test-camp")
    page.click("button:has-text('Create campaign')")
    assert "Campaign created." in page.inner_text("main")
    link = page.input_value("#campaign-link")
    page.click("[data-copy=campaign-link]")
    expect(page.locator("[data-copy=campaign-link]")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == link
    assert link == f"{admin.base_url}/test-camp?clickid={{click_id}}&zone={{zone_id}}"
    _shoot_everywhere(page, "12-campaign-edit")
    page.click("nav >> text=Traffic sources")
    page.click("text=Push Source")
    assert page.input_value("section.card >> textarea[id^=link-]") == link

    # The visitor clicks the link (the source filled its macros) and lands on the offer.
    page.goto(link.replace("{click_id}", "ext-123").replace("{zone_id}", "42"))
    landed = urlsplit(page.url)
    assert landed.path == "/offer"
    subid = parse_qs(landed.query)["sub1"][0]

    # The network fires its postback (server to server), once accepted and once unknown.
    fire = postback_url.replace("{sub1}", subid).replace("{amount}", "10.50")
    assert _get(fire.replace("{status}", "approved")) == "OK"
    assert _get(fire.replace("{status}", "reg") + "&tid=2").startswith("ERROR")
    assert _get(fire.replace("{status}", "reg") + "&tid=3").startswith("ERROR")

    page.goto(f"{admin_url}/conversions")
    assert subid in page.inner_text("main") and "sale" in page.inner_text("main")
    _shoot_everywhere(page, "13-conversions")

    # The received log shows both; training "reg" then re-processing records the registration.
    page.goto(f"{admin_url}/received-postbacks")
    text = page.inner_text("main")
    assert "accepted" in text and "unknown status" in text
    _shoot_everywhere(page, "14-received")
    page.goto(f"{admin_url}/received-postbacks?outcome=ignored")
    assert "accepted" not in page.inner_text("tbody")
    page.goto(f"{admin_url}/affiliate-networks")
    page.click("text=Test Network")
    page.fill("input[name=training_registration]", "reg")
    page.click("button:has-text('Save network')")
    page.goto(f"{admin_url}/received-postbacks?outcome=ignored")
    page.click("tbody button:has-text('Re-process') >> nth=0")
    assert "accepted" in page.inner_text(".flash")
    page.click("button:has-text('Re-process 1 ignored')")
    assert "Re-processed 1 ignored postbacks: 1 accepted." in page.inner_text(".flash")
    page.goto(f"{admin_url}/conversions?type=registration")
    assert subid in page.inner_text("tbody")

    # The sale went out as an S2S postback to the source, secret masked in the log.
    page.goto(f"{admin_url}/deliveries")
    _reload_until(page, "delivered", "tbody")
    assert "SECRET123" not in page.inner_text("main")
    _shoot_everywhere(page, "15-deliveries")
    assert any(p.startswith("/s2s?cid=ext-123&status=sale&payout=10.5") for p in recorder.paths)
    # The log names the subid that triggered the S2S (the URL has none) and filters by it.
    assert subid in page.inner_text("tbody")
    page.goto(f"{admin_url}/deliveries?subid=nosuch")
    assert "match these filters" in page.inner_text("main")
    page.goto(f"{admin_url}/deliveries?subid={subid}")
    page.click("tbody a >> nth=0")
    assert "200" in page.inner_text("tbody")
    assert f"subid {subid}" in page.inner_text("main")
    _shoot_everywhere(page, "16-delivery")
    page.click("button:has-text('Resend now')")
    assert "queued again" in page.inner_text(".flash")
    # Rendered again from unchanged settings it is the same request: the same delivery is queued.
    _reload_until(page, "delivered", "h1")
    page.click("button:has-text('Re-render and send')")
    assert "queued again" in page.inner_text(".flash")
    # After the source's S2S URL changes, re-rendering sends the new URL as a new delivery.
    _reload_until(page, "delivered", "h1")
    delivery_url = page.url
    page.click("nav >> text=Traffic sources")
    page.click("text=Push Source")
    page.fill("input[name=postback_url]", page.input_value("input[name=postback_url]") + "&v=2")
    page.click("button:has-text('Save traffic source')")
    page.goto(delivery_url)
    page.click("button:has-text('Re-render and send')")
    assert "rendered again and queued as" in page.inner_text(".flash")
    _reload_until(page, "delivered", "h1")
    assert "&v=2" in page.inner_text("main")
    page.goto(delivery_url)
    assert "delivered" in page.inner_text("h1")  # a delivered delivery stays history
    assert any(p.endswith("&v=2") for p in recorder.paths)

    # The report counts the click and the sale; the CSV says the same.
    page.goto(f"{admin_url}/reports")
    totals = {
        name: page.inner_text(f"tfoot [data-col={name}]")
        for name in ("clicks", "conversions", "revenue")
    }
    assert totals == {"clicks": "1", "conversions": "3", "revenue": "31.50"}
    _shoot_everywhere(page, "17-reports")
    page.select_option("select[name=g][data-level='0']", "campaign")
    page.fill("input[name=timezone]", "Pacific/Kiritimati")
    page.click("button:has-text('Show')")
    assert "Test Campaign" in page.inner_text("tbody")
    assert "in Pacific/Kiritimati" in page.inner_text("main")
    csv = page.request.get(page.url + "&format=csv").text()
    assert csv.splitlines()[0].startswith("campaign,campaign_id,clicks")
    assert "Test Campaign," in csv

    page.goto(f"{admin_url}/conversions")
    csv = page.request.get(page.url + "?format=csv&type=sale").text()
    assert csv.splitlines()[0].startswith("id,subid,tid,type")
    assert len(csv.splitlines()) == 2 and subid in csv

    page.goto(f"{admin_url}/campaigns")
    assert "Test Campaign" in page.inner_text("tbody")
    _shoot_everywhere(page, "18-campaigns")
    # Paused, the link answers 404; resumed, it redirects again.
    page.click("tbody button:has-text('Pause')")
    assert "paused" in page.inner_text(".flash")
    visit = link.replace("{click_id}", "ext-124").replace("{zone_id}", "42")
    assert page.request.get(visit, max_redirects=0).status == 404
    page.click("tbody button:has-text('Resume')")
    assert page.request.get(visit, max_redirects=0).status == 302
    # A target the outbox switched off is an alert on the dashboard, and can be enabled again.
    engine = make_engine(admin.env["CLICKLOOP_DATABASE_URL"])
    with engine.begin() as conn:
        source_id = conn.execute(
            select(t.traffic_sources.c.id).where(t.traffic_sources.c.name == "Push Source")
        ).scalar_one()
        disable_target(conn, kind=TargetKind.TRAFFIC_SOURCE, target_id=source_id, reason="410 Gone")
    engine.dispose()
    page.goto(f"{admin_url}/")
    assert "disabled: 410 Gone" in page.inner_text(".alerts")
    href = page.get_attribute(".alerts a", "href") or ""
    assert href.endswith(f"/traffic-sources/{source_id}")
    _shoot_everywhere(page, "19-dashboard-alert")
    page.click(".alerts button:has-text('Enable again')")
    assert "Target enabled again" in page.inner_text(".flash")
    assert "Every target is healthy." in page.inner_text("main")
    assert "Getting started" not in page.inner_text("main")

    page.goto(f"{admin_url}/")
    # Revenue today: the 10.50 sale and two 10.50 registrations.
    assert "31.50" in page.inner_text(".cards")
    _shoot_everywhere(page, "20-dashboard")

    # An API token made in Settings works on the REST API until it is revoked.
    page.goto(f"{admin_url}/settings")
    page.fill("#api-tokens input[name=name]", "browser test")
    page.click("button:has-text('Create token')")
    token = page.input_value("#new-token")
    _shoot_everywhere(page, "21-settings-token")
    api = urllib.request.Request(
        f"{admin.base_url}/api/v1/campaigns", headers={"authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(api, timeout=10) as answer:
        assert "Test Campaign" in answer.read().decode()
    page.click("#api-tokens button:has-text('Revoke')")
    assert "revoked" in page.inner_text(".flash")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(api, timeout=10)
    assert refused.value.code == 401

    page.click("button:has-text('Log out')")
    assert page.url.startswith(f"{admin_url}/login")
    page.goto(f"{admin_url}/campaigns")
    assert page.url.startswith(f"{admin_url}/login")
    assert errors == []
    context.close()
