"""POST /api/v1/reports/build over HTTP: a report with its source, page and totals, and a 422
naming the field for every kind of bad body (never a 500)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.services.tokens import create_token
from clickloop.storage import report_cubes
from clickloop.storage import tables as t
from tests.conftest import Server
from tests.e2e.test_api import NOW, Api

RANGE = {"from": "2026-03-01", "to": "2026-03-31", "timezone": "UTC"}


@pytest.fixture
def api(server: Server, engine: Engine) -> Api:
    return Api(server, create_token(engine, name="builder", now=NOW))


def test_a_report_over_http(api: Api, engine: Engine) -> None:
    """The answer names its path, its page and totals; money is Decimal text; CSV holds the
    same rows and totals."""
    campaign = entities.create_campaign(engine, name="Alpha", alias="alpha", now=NOW)
    with engine.begin() as conn:
        conn.execute(
            insert(t.clicks),
            [
                {
                    "subid": f"s{n}",
                    "created_at": datetime(2026, 3, 2 + n, tzinfo=UTC),
                    "campaign_id": campaign,
                    "country": country,
                    "cost": Decimal("0.25"),
                }
                for n, country in enumerate(["DE", "DE", "US"])
            ],
        )
    report_cubes.rebuild(engine)  # as the writers would have kept them
    status, report = api.call(
        "POST",
        "/reports/build",
        {
            "range": RANGE,
            "grouping": ["country"],
            "metrics": ["clicks", "cost", "cpc"],
            "sort": [{"name": "clicks", "order": "desc"}],
            "limit": 1,
        },
    )
    assert status == 200, report
    assert report["source"] == "aggregates:daily_country_totals"  # the smallest cube by country
    assert report["rows"] == [
        {
            "dimensions": {"country": "DE"},
            "labels": {"country": "DE"},
            "metrics": {"clicks": 2, "cost": "0.500000", "cpc": "0.2500"},
        }
    ]
    assert (report["total_rows"], report["truncated"]) == (2, True)
    assert report["totals"]["metrics"]["clicks"] == 3
    status, text = api.call(
        "POST",
        "/reports/build?format=csv",
        {"range": RANGE, "grouping": ["campaign"], "metrics": ["clicks", "cost"], "compare": True},
    )
    assert status == 200
    assert text.splitlines() == [
        "campaign,campaign_id,clicks,clicks_previous,clicks_change,cost,cost_previous,cost_change",
        f"Alpha,{campaign},3,0,,0.750000,0.000000,",
        "Total,,3,0,,0.750000,0.000000,",
    ]
    status, empty_body = api.call("POST", "/reports/build", raw=b"")
    assert status == 200 and empty_body["grouping"] == [], empty_body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"grouping": ["planet"]}, "grouping[0]"),
        ({"grouping": ["day", "campaign", "country", "os"]}, "grouping"),
        ({"grouping": ["day", "day"]}, "grouping"),
        ({"metrics": ["happiness"]}, "metrics[0]"),
        ({"metrics": ["conversions:nosuchtype"]}, "metrics[0]"),
        ({"metrics": []}, "metrics"),
        ({"colour": "blue"}, "colour"),
        ({"range": {"from": "2026-01-01", "to": "2026-01-02", "zone": "UTC"}}, "range.zone"),
        ({"range": {"from": "2026-01-01"}}, "range.to"),
        ({"range": {"from": "2026-02-30", "to": "2026-03-01"}}, "range.from"),
        ({"range": {"from": "2026-03-02", "to": "2026-03-01"}}, "range.to"),
        ({"range": {"from": "2020-01-01", "to": "2026-01-01"}}, "range.to"),
        ({"range": {"preset": "forever"}}, "range.preset"),
        ({"range": {"from": "0001-01-01", "to": "0001-01-02"}, "compare": True}, "range.from"),
        ({"range": {"from": "2026-01-01", "to": "9999-12-31"}}, "range.to"),
        ({"range": {"preset": "today", "from": "2026-01-01"}}, "range.from"),
        ({"range": {"timezone": "Mars/Olympus"}}, "range.timezone"),
        ({"range": {"timezone": "../../etc/passwd"}}, "range.timezone"),
        ({"range": {"timezone": "europe/berlin"}}, "range.timezone"),
        ({"range": {"timezone": ""}}, "range.timezone"),
        ({"range": "today"}, "range"),
        ({"limit": 0}, "limit"),
        ({"limit": 10_001}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": 5.5}, "limit"),
        ({"limit": True}, "limit"),
        ({"offset": -1}, "offset"),
        ({"totals": "yes"}, "totals"),
        ({"attribution": "whenever"}, "attribution"),
        ({"compare": True, "grouping": ["day"]}, "compare"),
        (
            {"filters": [{"name": "country", "operator": "like", "value": "D"}]},
            "filters[0].operator",
        ),
        ({"filters": [{"name": "country", "operator": "gt", "value": 1}]}, "filters[0].operator"),
        (
            {"filters": [{"name": "clicks", "operator": "equals", "value": 1}]},
            "filters[0].operator",
        ),
        ({"filters": [{"name": "planet", "operator": "equals", "value": 1}]}, "filters[0].name"),
        ({"filters": [{"name": "country", "operator": "equals"}]}, "filters[0].value"),
        (
            {"filters": [{"name": "country", "operator": "equals", "values": ["DE"]}]},
            "filters[0].values",
        ),
        (
            {"filters": [{"name": "country", "operator": "in_list", "values": ["x"] * 10_000}]},
            "filters[0].values",
        ),
        (
            {"filters": [{"name": "country", "operator": "in_list", "values": []}]},
            "filters[0].values",
        ),
        (
            {"filters": [{"name": "campaign", "operator": "equals", "value": "abc"}]},
            "filters[0].value",
        ),
        (
            {"filters": [{"name": "hour_of_day", "operator": "equals", "value": 24}]},
            "filters[0].value",
        ),
        (
            {"filters": [{"name": "day", "operator": "equals", "value": "2026-01-01"}]},
            "filters[0].name",
        ),
        ({"filters": [{"name": "roi", "operator": "between", "values": [5]}]}, "filters[0].values"),
        (
            {"filters": [{"name": "roi", "operator": "between", "values": [5, 1]}]},
            "filters[0].values",
        ),
        ({"filters": [{"name": "roi", "operator": "gt", "value": "lots"}]}, "filters[0].value"),
        ({"filters": [{"name": "roi", "operator": "gt", "value": 10**20}]}, "filters[0].value"),
        ({"filters": [{"name": "os", "operator": "is_empty", "value": "x"}]}, "filters[0].value"),
        (
            {"filters": [{"name": "os", "operator": "contains", "value": "a\u0000"}]},
            "filters[0].value",
        ),
        (
            {"filters": [{"name": "os", "operator": "equals", "value": "x" * 501}]},
            "filters[0].value",
        ),
        ({"filters": {"name": "os"}}, "filters"),
        ({"sort": [{"name": "happiness"}]}, "sort[0].name"),
        ({"sort": [{"name": "clicks", "order": "up"}]}, "sort[0].order"),
        ({"sort": [{"order": "asc"}]}, "sort[0].name"),
        ({"sort": [{"name": "clicks"}, {"name": "country"}]}, "sort[1].name"),
    ],
)
def test_bad_bodies_are_422_naming_the_field(
    module_api: Api, body: dict[str, Any], field: str
) -> None:
    """Each refusal names the field at fault, with a message a person can act on."""
    status, answer = module_api.call("POST", "/reports/build", body)
    assert status == 422, answer
    assert answer["code"] == "invalid" and answer["field"] == field, answer
    assert "Traceback" not in answer["message"] and len(answer["message"]) < 2000


def test_the_openapi_document_types_the_body(api: Api) -> None:
    """The build body is typed in the OpenAPI document: dimensions and operators enumerated."""
    status, document = api.call("GET", "/openapi.json")
    assert status == 200
    schema = document["paths"]["/reports/build"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    assert "sub_id_30" in schema["properties"]["grouping"]["items"]["enum"]
    operators = schema["properties"]["filters"]["items"]["properties"]["operator"]["enum"]
    assert {"in_list", "is_empty", "between"} <= set(operators)
    assert schema["additionalProperties"] is False


def test_the_shorthand_refuses_a_bad_time_zone(api: Api) -> None:
    """GET /reports with an unknown zone is a 422 naming it, never a report in UTC."""
    status, answer = api.call("GET", "/reports?timezone=Mars/Olympus")
    assert (status, answer.get("field")) == (422, "timezone")
