"""The admin report page over HTTP: its state is a report builder query in `q`, the form and
the links change that query, the CSV is the page, and saved reports are kept from it."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import urllib.parse
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from clickloop.services import entities, saved_reports
from clickloop.storage import report_cubes
from clickloop.storage import tables as t
from tests.e2e.test_admin_answers import Admin, admin  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow
NOW = datetime(2026, 3, 10, tzinfo=UTC)
RANGE = {"from": "2026-03-01", "to": "2026-03-31", "timezone": "UTC"}


def _rows(page: str) -> list[dict[str, str]]:
    """The table's rows and totals row as {column: text} (the drill link's text for a label)."""
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", page.split("<tbody>", 1)[1], re.S)
    cell = r'<t[dh][^>]*data-col="(\w+)"[^>]*>(?:<a[^>]*>)?([^<]*)'
    return [dict(re.findall(cell, row)) for row in rows]


def _q(query: dict[str, object], **extra: str) -> str:
    return "/reports?" + urllib.parse.urlencode({"q": json.dumps(query), **extra})


@pytest.fixture
def traffic(engine: Engine) -> dict[str, int]:
    ids = {
        name: entities.create_campaign(engine, name=name, alias=name.lower(), now=NOW)
        for name in ("Alpha", "Beta")
    }
    rows = [
        ("Alpha", "DE"),
        ("Alpha", "DE"),
        ("Alpha", "US"),
        ("Beta", "US"),
    ]
    with engine.begin() as conn:
        conn.execute(
            insert(t.clicks),
            [
                {
                    "subid": f"s{n}",
                    "created_at": datetime(2026, 3, 2 + n, tzinfo=UTC),
                    "campaign_id": ids[name],
                    "country": country,
                    "cost": Decimal("0.50"),
                }
                for n, (name, country) in enumerate(rows)
            ],
        )
    report_cubes.rebuild(engine)  # the clicks above were written around the writer
    return ids


def test_the_page_and_its_csv_show_the_same_query(admin: Admin, traffic: dict[str, int]) -> None:  # noqa: F811
    """Grouped by campaign and sorted by clicks, the table and the CSV hold the same rows and
    totals; the page says which path answered."""
    query = {
        "range": RANGE,
        "grouping": ["campaign"],
        "metrics": ["clicks", "cost"],
        "sort": [{"name": "clicks", "order": "desc"}],
    }
    status, _, page = admin.call("GET", _q(query))
    assert status == 200, page[-500:]
    cells = re.findall(r'<td[^>]*data-col="(\w+)"[^>]*>(?:<a[^>]*>)?([^<]*)', page)
    assert cells == [
        ("campaign", "Alpha"),
        ("clicks", "3"),
        ("cost", "1.50"),
        ("campaign", "Beta"),
        ("clicks", "1"),
        ("cost", "0.50"),
    ]
    assert "Answered from the raw tables" in page or "Answered from the aggregates" in page
    status, headers, text = admin.call("GET", _q(query, format="csv"))
    assert status == 200 and headers["content-type"].startswith("text/csv")
    records = list(csv.DictReader(io.StringIO(text)))
    assert [(r["campaign"], r["clicks"], Decimal(r["cost"])) for r in records] == [
        ("Alpha", "3", Decimal("1.5")),
        ("Beta", "1", Decimal("0.5")),
        ("Total", "4", Decimal("2")),
    ]


def test_the_form_and_the_links_change_the_query(admin: Admin, traffic: dict[str, int]) -> None:  # noqa: F811
    """Applying the form with a new filter (campaigns by name or id) redirects to the page of the
    changed query; a row's drill-down filters by it and adds the next level."""
    base = {"range": RANGE, "grouping": ["campaign"]}
    form = {
        "q": json.dumps(base),
        "apply": "1",
        "preset": "",
        "from": "2026-03-01",
        "to": "2026-03-31",
        "timezone": "UTC",
        "g": "country",
        "m": "clicks",
        "attribution": "click_time",
        "compare": "1",
        "limit": "50",
        "fname": "campaign",
        "fop": "in_list",
        "fvalue": f"alpha, {traffic['Beta']}",
    }
    status, headers, _ = admin.call("GET", "/reports?" + urllib.parse.urlencode(form))
    assert status == 303
    location = urllib.parse.urlsplit(headers["location"])
    query = json.loads(urllib.parse.parse_qs(location.query)["q"][0])
    assert query == {
        "range": RANGE,
        "grouping": ["country"],
        "metrics": ["clicks"],
        "attribution": "click_time",
        "compare": True,
        "limit": 50,
        "filters": [
            {
                "name": "campaign",
                "operator": "in_list",
                "values": [str(traffic["Alpha"]), str(traffic["Beta"])],
            }
        ],
    }
    status, _, page = admin.call("GET", "/reports?" + location.query)
    assert status == 200
    assert re.findall(r'<td data-col="country">(?:<a[^>]*>)?([^<]*)', page) == ["DE", "US"]
    # Compared with the previous period: the CSV carries the same before and change columns.
    _, _, text = admin.call("GET", "/reports?" + location.query + "&format=csv")
    records = list(csv.DictReader(io.StringIO(text)))
    assert _rows(page) == [
        {k: records[n][k] for k in ("country", "clicks", "clicks_previous", "clicks_change")}
        for n in range(len(records))
    ]
    assert _rows(page)[0] == {
        "country": "DE",
        "clicks": "2",
        "clicks_previous": "0",
        "clicks_change": "",
    }
    assert "campaign in list Alpha, Beta" in html.unescape(page)

    drill = html.unescape(re.search(r'<tr data-href="([^"]+)"', page).group(1))  # type: ignore[union-attr]
    drilled = json.loads(urllib.parse.parse_qs(drill.lstrip("?"))["q"][0])
    assert drilled["grouping"] == ["country", "campaign"]
    assert drilled["filters"][-1] == {"name": "country", "operator": "equals", "value": "DE"}
    status, _, page = admin.call("GET", "/reports" + drill)
    assert status == 200
    assert re.findall(r'<td data-col="campaign">([^<]*)', page) == ["Alpha"]


def test_a_bad_query_is_a_422_page_naming_the_field(admin: Admin) -> None:  # noqa: F811
    """A hand-edited `q` the builder refuses answers a 422 page naming the field, never a 500."""
    for q, field in (
        ('{"grouping":["planet"]}', "q.grouping[0]"),
        ("{not json", "q"),
        ("[1]", "q"),
        ("[" * 3000 + "]" * 3000, "q"),
        ('{"range":{"timezone":"Mars/Olympus"}}', "q.range.timezone"),
    ):
        status, _, page = admin.call("GET", "/reports?" + urllib.parse.urlencode({"q": q}))
        assert status == 422, (q, page[-300:])
        assert f"“{field}”" in html.unescape(page), q


def test_the_old_page_urls_still_answer(admin: Admin, traffic: dict[str, int]) -> None:  # noqa: F811
    """group_by, from, to, timezone and campaign_id (bookmarks, old CSV links) still work."""
    alpha = traffic["Alpha"]
    path = f"/reports?group_by=country&from=2026-03-01&to=2026-03-31&campaign_id={alpha}"
    status, _, text = admin.call("GET", path + "&format=csv")
    assert status == 200
    records = list(csv.DictReader(io.StringIO(text)))
    assert [(r["country"], r["clicks"]) for r in records] == [
        ("DE", "2"),
        ("US", "1"),
        ("Total", "3"),
    ]


def test_saved_reports_from_the_page(admin: Admin, engine: Engine) -> None:  # noqa: F811
    """Save the shown query under a name, open it, rename it, delete it; a taken name is
    refused with the reason and nothing else is saved."""
    query = {"range": {"preset": "yesterday"}, "grouping": ["country"]}
    _, _, page = admin.call("GET", _q(query))
    token = admin.csrf(page)
    form = {"csrf": token, "q": json.dumps(query), "name": "Countries"}
    status, headers, _ = admin.call("POST", "/reports/saved", form)
    assert status == 303
    (saved,) = saved_reports.list_saved(engine)
    assert saved["name"] == "Countries" and saved["query"] == query
    assert admin.call("POST", "/reports/saved", form)[0] == 303
    assert len(saved_reports.list_saved(engine)) == 1
    _, _, page = admin.call("GET", "/reports")
    assert "already exists" in html.unescape(page) and "Countries" in page

    status, headers, _ = admin.call("GET", f"/reports/saved/{saved['id']}")
    assert status == 303
    opened = urllib.parse.parse_qs(urllib.parse.urlsplit(headers["location"]).query)["q"][0]
    assert json.loads(opened) == query

    rename = {"csrf": token, "name": "By country"}
    assert admin.call("POST", f"/reports/saved/{saved['id']}/rename", rename)[0] == 303
    assert saved_reports.get_saved(engine, saved["id"])["name"] == "By country"
    assert admin.call("POST", f"/reports/saved/{saved['id']}/delete", {"csrf": token})[0] == 303
    assert saved_reports.list_saved(engine) == []
    assert admin.call("GET", f"/reports/saved/{saved['id']}")[0] == 404


def test_drilling_into_a_day_narrows_the_range(admin: Admin, traffic: dict[str, int]) -> None:  # noqa: F811
    """A report by day has its clicks chart. Time buckets cannot be filtered on: a day's
    drill-down makes the range that day and groups by the next level (it was a 422 page)."""
    _, _, page = admin.call("GET", _q({"range": RANGE, "grouping": ["day"]}))
    assert 'aria-label="Clicks per day' in page  # the chart above a report by day
    links = [html.unescape(link) for link in re.findall(r'<tr data-href="([^"]+)"', page)]
    drilled = json.loads(urllib.parse.parse_qs(links[0].lstrip("?"))["q"][0])
    assert drilled["range"] == {"from": "2026-03-02", "to": "2026-03-02", "timezone": "UTC"}
    assert drilled["grouping"] == ["day", "campaign"] and "filters" not in drilled
    status, _, page = admin.call("GET", "/reports" + links[0])
    assert status == 200
    assert re.findall(r'<td data-col="campaign">([^<]*)', page) == ["Alpha"]


def test_a_form_mistake_keeps_the_report_and_names_the_field(admin: Admin) -> None:  # noqa: F811
    """A filter the builder refuses (a campaign no name or id matches) is not applied: the page
    of the previous query comes back with the field named."""
    base = {"range": RANGE, "grouping": ["campaign"]}
    form = {"q": json.dumps(base), "apply": "1", "g": "campaign", "preset": "", **RANGE}
    form |= {"fname": "campaign", "fop": "equals", "fvalue": "Gamma"}
    status, headers, _ = admin.call("GET", "/reports?" + urllib.parse.urlencode(form))
    assert status == 303
    kept = urllib.parse.parse_qs(urllib.parse.urlsplit(headers["location"]).query)["q"][0]
    assert json.loads(kept) == base
    _, _, page = admin.call("GET", "/reports?" + urllib.parse.urlsplit(headers["location"]).query)
    assert "Not applied: filters[0].value" in html.unescape(page)


def test_pages_say_when_rows_were_cut(admin: Admin, traffic: dict[str, int]) -> None:  # noqa: F811
    """One row per page: the first says more rows follow and links the next; the last links
    back and says nothing is cut; the totals stay those of every row."""
    query = {"range": RANGE, "grouping": ["campaign"], "metrics": ["clicks"], "limit": 1}
    _, _, page = admin.call("GET", _q(query))
    assert [r.get("campaign") for r in _rows(page)] == ["Alpha", "Total"]
    assert _rows(page)[-1]["clicks"] == "4"
    assert "Rows 1\u20131 of 2" in page and "more rows on the next pages" in page
    following = html.unescape(re.search(r'href="([^"]+)">Next', page).group(1))  # type: ignore[union-attr]
    _, _, page = admin.call("GET", "/reports" + following)
    assert [r.get("campaign") for r in _rows(page)] == ["Beta", "Total"]
    assert "Rows 2\u20132 of 2" in page and "more rows" not in page and "Next" not in page
    assert "← Previous" in page
