"""A server's log as an operator reads it: JSON lines with times, and the access log."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import Server

pytestmark = pytest.mark.slow


@pytest.fixture
def server_env() -> dict[str, str]:
    return {
        "CLICKLOOP_LOG_LEVEL": "info",
        "CLICKLOOP_LOG_FORMAT": "json",
        "CLICKLOOP_ACCESS_LOG": "true",
    }


def test_json_logs_with_an_access_line_per_request(server: Server) -> None:
    """With LOG_FORMAT=json every log line is an object with time, level and logger, and the
    access log has a line for each request."""
    urllib.request.urlopen(f"{server.base_url}/healthz", timeout=5).read()
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"{server.base_url}/no-such-campaign", timeout=5)
    time.sleep(0.3)
    lines = [
        line
        for line in server.log_path.read_text().splitlines()
        if line and not line.startswith("clickloop serving on ")
    ]
    records = [json.loads(line) for line in lines]
    assert records
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    access = [r["message"] for r in records if r["logger"] == "uvicorn.access"]
    assert any('"GET /healthz HTTP/1.1" 200' in m for m in access)
    assert any('"GET /no-such-campaign HTTP/1.1" 404' in m for m in access)
