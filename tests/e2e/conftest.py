"""End-to-end fixtures shared by several modules."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from clickloop.services.tokens import create_token
from tests.conftest import Server
from tests.e2e.test_api import NOW, Api


@pytest.fixture(scope="module")
def module_api(module_server: Server, module_engine: Engine) -> Api:
    """The API of the module's shared server, for requests that are refused or only read."""
    return Api(module_server, create_token(module_engine, name="module", now=NOW))
