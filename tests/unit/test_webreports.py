"""The report page's query helpers: links that change the query, drill-down, shown numbers."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from urllib.parse import parse_qs

from starlette.datastructures import QueryParams

from clickloop.http.webreports import cell, changed, drill_link, form_query, sort_link


def _query_in(link: str) -> dict[str, object]:
    return dict(json.loads(parse_qs(link.lstrip("?"))["q"][0]))


def test_changed_starts_again_at_the_first_row() -> None:
    """Every change of the query drops the offset; None removes a field."""
    assert changed({"offset": 200, "sort": [1], "limit": 5}, sort=None) == {"limit": 5}


def test_sort_link_toggles_the_direction() -> None:
    """A metric sorts from the most first, a dimension from A; clicking again reverses."""
    link, arrow = sort_link({"grouping": ["country"]}, "clicks")
    assert _query_in(link)["sort"] == [{"name": "clicks", "order": "desc"}] and arrow == ""
    link, arrow = sort_link(_query_in(link), "clicks")
    assert _query_in(link)["sort"] == [{"name": "clicks", "order": "asc"}] and arrow == " ↓"
    assert _query_in(sort_link({}, "country")[0])["sort"] == [{"name": "country", "order": "asc"}]


def test_drill_into_time_buckets_narrows_the_range_within_the_shown_one() -> None:
    """Weeks and months are clipped to the range shown; an hour keeps its day and hour."""
    shown = (date(2026, 3, 4), date(2026, 3, 31))
    base = {"range": {"preset": "this_month", "timezone": "Asia/Tokyo"}, "grouping": ["week"]}
    week = _query_in(drill_link(base, {"week": "2026-03-02"}, "campaign", shown))
    assert week["range"] == {"from": "2026-03-04", "to": "2026-03-08", "timezone": "Asia/Tokyo"}
    assert week["grouping"] == ["week", "campaign"]
    month = _query_in(drill_link({}, {"month": "2026-03"}, "day", shown))
    assert month["range"] == {"from": "2026-03-04", "to": "2026-03-31"}
    hour = _query_in(drill_link({}, {"hour": "2026-03-05T07:00"}, "os", shown))
    assert hour["range"] == {"from": "2026-03-05", "to": "2026-03-05"}
    assert hour["filters"] == [{"name": "hour_of_day", "operator": "equals", "value": "7"}]
    december = _query_in(
        drill_link({}, {"month": "2025-12"}, "day", (date(2025, 1, 1), date(2026, 1, 31)))
    )
    assert december["range"] == {"from": "2025-12-01", "to": "2025-12-31"}


def test_drill_on_an_empty_value_and_at_three_levels() -> None:
    """An empty value filters with is_empty; at three levels the grouping stays as it is."""
    base = {"grouping": ["campaign", "offer", "country"]}
    drilled = _query_in(
        drill_link(
            base, {"campaign": "3", "offer": "", "country": "DE"}, "os", (date.min, date.max)
        )
    )
    assert drilled["grouping"] == ["campaign", "offer", "country"]
    assert drilled["filters"] == [
        {"name": "campaign", "operator": "equals", "value": "3"},
        {"name": "offer", "operator": "is_empty"},
        {"name": "country", "operator": "equals", "value": "DE"},
    ]


def test_form_query_reads_the_form_and_keeps_filters() -> None:
    """Lists split on commas, names become ids, a sort on a dropped level goes away."""
    base = {
        "filters": [{"name": "country", "operator": "equals", "value": "DE"}],
        "sort": [{"name": "offer"}, {"name": "clicks"}],
    }
    form = QueryParams(
        "preset=yesterday&g=campaign&g=&g=campaign&m=clicks&m=cost&limit=25"
        "&fname=campaign&fop=not_in_list&fvalue=Alpha,+7,+nobody"
    )
    query = form_query(base, form, {"campaign": {3: "alpha"}})
    assert query == {
        "range": {"preset": "yesterday"},
        "grouping": ["campaign"],
        "metrics": ["clicks", "cost"],
        "attribution": "conversion_time",
        "compare": False,
        "limit": 25,
        "sort": [{"name": "clicks"}],
        "filters": [
            {"name": "country", "operator": "equals", "value": "DE"},
            {"name": "campaign", "operator": "not_in_list", "values": ["3", "7", "nobody"]},
        ],
    }


def test_cell_keeps_the_value_exact() -> None:
    """Micro-unit zeros beyond two decimals go; no digit that matters does."""
    assert [
        cell(v) for v in (None, 3, Decimal("1.500000"), Decimal("0.123400"), Decimal("-2"))
    ] == [
        "",
        "3",
        "1.50",
        "0.1234",
        "-2",
    ]
