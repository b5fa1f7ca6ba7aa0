"""Saved reports: a name and a report builder query, checked as the builder checks it, on
SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy.engine import Engine

from clickloop.errors import Conflict, InvalidInput, NotFound
from clickloop.services import saved_reports

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
QUERY = {
    "range": {"preset": "last_7_days"},
    "grouping": ["campaign", "country"],
    "filters": [{"name": "profit", "operator": "gt", "value": Decimal("1.5")}],
}


def test_create_list_rename_replace_delete(engine: Engine) -> None:
    """A saved report keeps its query as given (the preset stays relative, amounts as text);
    renaming and replacing the query keep its id; deleting removes it."""
    saved = saved_reports.create_saved(engine, name="  Zones  ", query=QUERY, now=NOW)
    assert saved["name"] == "Zones"
    assert saved["query"]["range"] == {"preset": "last_7_days"}
    assert saved["query"]["filters"][0]["value"] == "1.5"
    saved_reports.create_saved(engine, name="Alpha", query={}, now=NOW)
    assert [r["name"] for r in saved_reports.list_saved(engine)] == ["Alpha", "Zones"]

    renamed = saved_reports.update_saved(engine, saved["id"], {"name": "By zone"}, now=NOW)
    assert (renamed["id"], renamed["name"], renamed["query"]) == (
        saved["id"],
        "By zone",
        saved["query"],
    )
    replaced = saved_reports.update_saved(
        engine, saved["id"], {"query": {"grouping": ["day"]}}, now=NOW
    )
    assert replaced["query"] == {"grouping": ["day"]} and replaced["name"] == "By zone"

    saved_reports.delete_saved(engine, saved["id"])
    assert [r["name"] for r in saved_reports.list_saved(engine)] == ["Alpha"]
    with pytest.raises(NotFound):
        saved_reports.delete_saved(engine, saved["id"])
    with pytest.raises(NotFound):
        saved_reports.update_saved(engine, saved["id"], {"name": "x"}, now=NOW)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("not an object", "query"),
        ({"grouping": ["planet"]}, "query.grouping[0]"),
        ({"grouping": ["day", "hour", "country", "os"]}, "query.grouping"),
        ({"metrics": ["clicks", "happiness"]}, "query.metrics[1]"),
        ({"range": {"timezone": "Mars/Olympus"}}, "query.range.timezone"),
        ({"filters": [{"name": "country", "operator": "gt", "value": "DE"}]}, "query.filters[0]"),
        ({"limit": 0}, "query.limit"),
        ({"colour": "red"}, "query"),
    ],
)
def test_a_bad_query_is_refused_naming_the_field(engine: Engine, query: object, field: str) -> None:
    """A query the builder would refuse is never stored; the error names the query's field."""
    with pytest.raises(InvalidInput) as caught:
        saved_reports.create_saved(engine, name="Bad", query=query, now=NOW)
    assert caught.value.field.startswith(field), caught.value
    assert saved_reports.list_saved(engine) == []


def test_names_are_required_and_unique(engine: Engine) -> None:
    """A blank or overlong name is refused; a taken one is a conflict, on create and rename."""
    for name in ("", "   ", "x" * 201, None):
        with pytest.raises(InvalidInput) as caught:
            saved_reports.create_saved(engine, name=name, query={}, now=NOW)
        assert caught.value.field == "name"
    first = saved_reports.create_saved(engine, name="One", query={}, now=NOW)
    saved_reports.create_saved(engine, name="Two", query={}, now=NOW)
    with pytest.raises(Conflict):
        saved_reports.create_saved(engine, name="One", query={}, now=NOW)
    with pytest.raises(Conflict):
        saved_reports.update_saved(engine, first["id"], {"name": "Two"}, now=NOW)
    with pytest.raises(InvalidInput) as caught:
        saved_reports.update_saved(engine, first["id"], {"owner": "me"}, now=NOW)
    assert caught.value.field == "owner"
