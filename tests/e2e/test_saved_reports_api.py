"""/api/v1/saved-reports over HTTP: list, create, rename, replace the query, delete; a bad query
is a 422 naming its field, a taken name a 409, an unknown id a 404."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from clickloop.services.tokens import create_token
from tests.conftest import Server
from tests.e2e.test_api import NOW, Api

QUERY = {"range": {"preset": "yesterday"}, "grouping": ["campaign"], "metrics": ["clicks"]}


@pytest.fixture
def api(server: Server, engine: Engine) -> Api:
    return Api(server, create_token(engine, name="saved", now=NOW))


def test_saved_reports_round_trip(api: Api) -> None:
    """A created report is listed with its query as sent; PATCH renames it or replaces the
    query; DELETE removes it, and a second DELETE is a 404."""
    status, created = api.call("POST", "/saved-reports", {"name": "Daily", "query": QUERY})
    assert status == 201, created
    assert created["name"] == "Daily" and created["query"] == QUERY
    status, listed = api.call("GET", "/saved-reports")
    assert status == 200 and [r["id"] for r in listed["items"]] == [created["id"]]

    path = f"/saved-reports/{created['id']}"
    status, renamed = api.call("PATCH", path, {"name": "Every day"})
    assert status == 200 and renamed["name"] == "Every day" and renamed["query"] == QUERY
    status, replaced = api.call("PATCH", path, {"query": {"grouping": ["country"]}})
    assert status == 200 and replaced["query"] == {"grouping": ["country"]}

    status, _ = api.call("POST", "/saved-reports", {"name": "Other", "query": {}})
    assert status == 201
    status, answer = api.call("PATCH", path, {"name": "Other"})
    assert status == 409, answer
    status, answer = api.call("POST", "/saved-reports", {"name": "Other", "query": {}})
    assert status == 409, answer

    assert api.call("DELETE", path)[0] == 204
    assert api.call("DELETE", path)[0] == 404
    assert api.call("PATCH", path, {"name": "Back"})[0] == 404
    assert [r["name"] for r in api.call("GET", "/saved-reports")[1]["items"]] == ["Other"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "query": {"grouping": ["planet"]}}, "query.grouping[0]"),
        ({"name": "x", "query": {"metrics": ["happiness"]}}, "query.metrics[0]"),
        ({"name": "x", "query": {"range": {"timezone": "Mars/Olympus"}}}, "query.range.timezone"),
        (
            {"name": "x", "query": {"range": {"from": "2026-02-30", "to": "2026-03-01"}}},
            "query.range.from",
        ),
        ({"name": "x", "query": {"limit": 10**9}}, "query.limit"),
        ({"name": "x", "query": "grouping=day"}, "query"),
        ({"name": "", "query": {}}, "name"),
        ({"query": {}}, "name"),
        ({"name": "x"}, "query"),
        ({"name": "x", "query": {}, "owner": "me"}, "owner"),
    ],
)
def test_a_bad_body_is_a_422_naming_the_field(
    module_api: Api, body: dict[str, object], field: str
) -> None:
    """Nothing is stored from a body the builder would refuse, and the answer names the field."""
    status, answer = module_api.call("POST", "/saved-reports", body)
    assert status == 422, answer
    assert answer["field"] == field, answer
    assert module_api.call("GET", "/saved-reports")[1]["items"] == []


def test_patch_refuses_a_bad_query_naming_the_field(api: Api) -> None:
    """PATCH checks a new query as POST does and leaves the stored one alone."""
    _, created = api.call("POST", "/saved-reports", {"name": "Daily", "query": QUERY})
    path = f"/saved-reports/{created['id']}"
    status, answer = api.call("PATCH", path, {"query": {"sort": [{"name": "nope"}]}})
    assert status == 422 and answer["field"].startswith("query.sort"), answer
    assert api.call("GET", "/saved-reports")[1]["items"][0]["query"] == QUERY


def test_an_id_beyond_any_row_is_a_404(api: Api) -> None:
    """An id past the column's range is not found (it was a 500 from the database driver)."""
    huge = "/saved-reports/54163851478135166105066842095616"
    assert api.call("PATCH", huge, {})[0] == 404
    assert api.call("DELETE", huge)[0] == 404
