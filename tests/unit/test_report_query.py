"""The report builder's query: defaults, presets and refusals, before any database is asked."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from clickloop.errors import InvalidInput
from clickloop.http.webcore import zone_of
from clickloop.services.report_query import (
    DEFAULT_METRICS,
    ReportQuery,
    SortKey,
    known_types,
    parse_query,
)

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


def test_an_empty_body_is_the_last_7_days_in_the_setting_zone() -> None:
    """Defaults: the setting's zone, 7 days to today, no grouping, the default metrics."""
    query = parse_query({}, now=NOW, default_timezone="Asia/Tokyo", conversion_types=())
    assert (query.date_from, query.date_to, query.timezone) == (
        date(2026, 3, 4),
        date(2026, 3, 10),
        "Asia/Tokyo",
    )
    assert query.grouping == () and query.metrics == DEFAULT_METRICS
    assert (query.limit, query.offset, query.totals) == (100, 0, True)
    assert (query.attribution, query.compare) == ("conversion_time", False)


def test_custom_types_make_typed_metrics() -> None:
    """conversions:<type> and revenue:<type> exist for built-in and custom types only."""
    types = known_types(["upsale"])
    body = {"metrics": ["conversions:upsale", "revenue:sale"]}
    query = parse_query(body, now=NOW, default_timezone="UTC", conversion_types=types)
    assert query.metrics == ("conversions:upsale", "revenue:sale")
    with pytest.raises(InvalidInput) as caught:
        parse_query(
            {"metrics": ["conversions:upsale"]},
            now=NOW,
            default_timezone="UTC",
            conversion_types=known_types([]),
        )
    assert caught.value.field == "metrics[0]"


def test_a_stored_zone_that_does_not_load_is_an_error_not_utc() -> None:
    """The admin pages' zone: one that cannot be loaded is refused, naming the setting."""
    assert zone_of({"timezone": "Europe/Berlin"}).key == "Europe/Berlin"
    with pytest.raises(InvalidInput) as caught:
        zone_of({"timezone": "Mars/Olympus"})
    assert caught.value.field == "timezone"


def test_a_query_built_in_code_is_checked_too() -> None:
    """A ReportQuery made directly (by the UI, the dashboard) refuses unknown names as well."""
    with pytest.raises(InvalidInput) as caught:
        ReportQuery(
            date_from=date(2026, 3, 1),
            date_to=date(2026, 3, 2),
            timezone="UTC",
            sort=(SortKey(name="happiness", descending=True),),
        )
    assert caught.value.field == "sort[0].name"
