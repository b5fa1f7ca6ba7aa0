"""Schemathesis drives every operation of the OpenAPI document against a real server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from sqlalchemy.engine import Engine

from clickloop.services.tokens import create_token
from tests.conftest import Server


@pytest.mark.slow
def test_no_operation_answers_5xx(server: Server, engine: Engine) -> None:
    """Generated valid and invalid requests never make the API answer with a server error."""
    token = create_token(engine, name="fuzz", now=datetime.now(UTC))
    schema = schemathesis.openapi.from_url(f"{server.base_url}/api/v1/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            response = case.call(
                base_url=f"{server.base_url}/api/v1", headers={"Authorization": f"Bearer {token}"}
            )
            if response.status_code >= 500 and response.status_code != 503:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")
            case.validate_response(response, checks=(not_a_server_error,))

        check()
    assert failures == []
