"""The report page in headless Chromium: group, sort by a header, drill down into a row, add a
filter chip, save the view, reopen it, and download a CSV equal to the table shown."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.storage import report_cubes
from clickloop.storage import tables as t
from tests.browser.conftest import ADMIN_PASSWORD, ADMIN_USER, SCREENSHOTS
from tests.conftest import Server

pytestmark = pytest.mark.slow


def _table(page: Any) -> list[dict[str, str]]:
    """The shown rows (and the totals row) as {column: text}."""
    return [
        {
            cell.get_attribute("data-col"): cell.inner_text().strip()
            for cell in row.locator("[data-col]").all()
        }
        for row in page.locator("#report-table tbody tr, #report-table tfoot tr").all()
    ]


def _click(page: Any, selector: str) -> None:
    """Click what loads another page, and wait until that page (after redirects) is in."""
    with page.expect_navigation():
        page.click(selector)


def _same(shown: str, written: str) -> bool:
    if shown == written:
        return True
    try:
        return Decimal(shown) == Decimal(written)
    except ArithmeticError:
        return False


def test_report_page_groups_drills_filters_saves_and_exports(
    admin: Server, engine: Engine, browser: Any
) -> None:
    """Each step changes the one query behind the page; the CSV is exactly the table; no
    console error or CSP violation on the way."""
    now = datetime.now(UTC) - timedelta(hours=2)
    ids = {n: entities.create_campaign(engine, name=n, alias=n.lower(), now=now) for n in "AB"}
    clicks = [("A", "DE")] * 3 + [("A", "US")] + [("B", "US")] * 2
    with engine.begin() as conn:
        conn.execute(
            insert(t.clicks),
            [
                {
                    "subid": f"s{n}",
                    "created_at": now,
                    "campaign_id": ids[name],
                    "country": country,
                    "cost": Decimal("0.10"),
                }
                for n, (name, country) in enumerate(clicks)
            ],
        )
    report_cubes.rebuild(engine)  # the clicks above were written around the writer
    page = browser.new_page(viewport={"width": 1366, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    admin_url = f"{admin.base_url}/admin"
    page.goto(f"{admin_url}/login")
    page.fill("input[name=username]", ADMIN_USER)
    page.fill("input[name=password]", ADMIN_PASSWORD)
    _click(page, "button:has-text('Log in')")

    # Group by campaign over the last 30 days; custom dates hide behind the preset.
    page.goto(f"{admin_url}/reports")
    assert not page.locator(".custom-date").first.is_visible()
    page.select_option("#preset", "last_30_days")
    page.select_option("select[name=g][data-level='0']", "campaign")
    page.select_option("select[name=then]", "country")
    _click(page, "button:has-text('Show')")
    assert [r["campaign"] for r in _table(page)] == ["A", "B", "Total"]

    # Sort by clicking a header: clicks from the most, then again from the least.
    _click(page, "#report-table thead th[data-col=clicks] a")
    assert [r["clicks"] for r in _table(page)][:2] == ["4", "2"]
    _click(page, "#report-table thead th[data-col=clicks] a")
    assert [r["campaign"] for r in _table(page)][:2] == ["B", "A"]

    # Drill down: clicking A's row filters by A and groups by country too.
    with page.expect_navigation():
        page.locator("#report-table tbody tr", has_text="A").locator("td[data-col=clicks]").click()
    rows = _table(page)
    assert [(r["campaign"], r["country"]) for r in rows[:-1]] == [("A", "DE"), ("A", "US")]
    assert "campaign equals A" in page.inner_text(".chips")

    # A metric filter chip: clicks > 1 keeps DE only; removing the chip brings US back.
    page.select_option("select[name=fname]", "clicks")
    page.select_option("select[name=fop]", "gt")
    page.fill("input[name=fvalue]", "1")
    _click(page, "button:has-text('Show')")
    assert [r["country"] for r in _table(page)[:-1]] == ["DE"]
    _click(page, "a[aria-label='Remove filter clicks gt 1']")
    assert [r["country"] for r in _table(page)[:-1]] == ["DE", "US"]
    page.select_option("select[name=fname]", "clicks")
    page.select_option("select[name=fop]", "gt")
    page.fill("input[name=fvalue]", "1")
    _click(page, "button:has-text('Show')")
    shown = _table(page)
    assert len(page.locator(".chip").all()) == 2

    # Save the view, open the page afresh, reopen the saved view.
    page.fill("input[name=name][placeholder]", "A by country")
    _click(page, "button:has-text('Save this report')")
    assert "Saved as “A by country”" in page.inner_text(".flash")
    page.goto(f"{admin_url}/reports")
    _click(page, "a.open-saved:has-text('A by country')")
    assert _table(page) == shown
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "reports-saved-laptop.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(SCREENSHOTS / "reports-saved-phone.png"), full_page=True)

    # The CSV is the table: same rows, same columns, same numbers.
    with page.expect_download() as download:
        page.click("#report-csv")
    text = download.value.path().read_text()
    records = list(csv.DictReader(io.StringIO(text)))
    assert len(records) == len(shown)
    for cells, record in zip(shown, records, strict=True):
        for column, value in cells.items():
            assert _same(value, record[column]), (column, value, record[column])
    assert errors == []
