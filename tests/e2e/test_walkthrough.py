"""Issue #17's "done when", as one walk through the README: a campaign set up with the command
line alone, its click and postback through nginx with the shipped config, the S2S delivered to
the source, JSON logs, metrics scraped with the token, and a backup restored into an empty
database that holds the conversion. (systemd itself cannot run here: test_deployment.py checks
the unit with `systemd-analyze verify`.)"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.conftest import Server, http_endpoint
from tests.e2e.test_backup import fresh_url  # noqa: F401
from tests.e2e.test_clicks import wait_for_link
from tests.e2e.test_deployment import Proxy, proxy  # noqa: F401

pytestmark = pytest.mark.slow

TOKEN = "walkthrough-metrics-token"


@pytest.fixture
def server_env() -> dict[str, str]:
    return {
        "CLICKLOOP_LOG_LEVEL": "info",
        "CLICKLOOP_LOG_FORMAT": "json",
        "CLICKLOOP_METRICS_TOKEN": TOKEN,
        "CLICKLOOP_WORKERS": "2",
    }


@pytest.fixture
def source_endpoint() -> Iterator[tuple[str, list[str]]]:
    """The traffic source's S2S postback receiver: every request's path and query."""
    seen: list[str] = []

    def answer(request: BaseHTTPRequestHandler) -> tuple[int, bytes]:
        seen.append(request.path)
        return 200, b"OK"

    with http_endpoint(answer) as base:
        yield base, seen


def cli(server: Server, *args: str) -> str:
    done = server.cli(*args)
    assert done.returncode == 0, f"clickloop {' '.join(args)}: {done.stderr}"
    return done.stdout


def test_from_the_readme_to_a_delivered_s2s_and_a_restored_backup(
    server: Server,
    proxy: Proxy,  # noqa: F811
    source_endpoint: tuple[str, list[str]],
    fresh_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Setup from the shell, a visit and a sale through nginx over https, the S2S at the
    source, the JSON log, a scrape summing both workers, and a restore that holds the sale."""
    base, seen = source_endpoint
    cli(server, "settings", "set", "allowed_networks", "127.0.0.1")  # the source is local here
    cli(server, "traffic-sources", "add", "ExoClick", "--parameter",
        "external_id:clickid:{conversions_tracking}",
        "--postback-url", f"{base}/s2s?cid={{external_id}}&p={{payout}}")  # fmt: skip
    cli(server, "affiliate-networks", "add", "Network", "--offer-params", "&sub={subid}")
    cli(server, "offers", "add", "Dating DE", "--url", "https://offers.example/dating?aff=42",
        "--network", "Network", "--payout", "4.50", "--currency", "USD")  # fmt: skip
    cli(server, "campaigns", "add", "Dating DE / ExoClick", "--alias", "dating-de",
        "--source", "ExoClick", "--offer", "Dating DE:100")  # fmt: skip
    link = cli(server, "campaigns", "link", "dating-de").strip()
    assert link == f"{server.base_url}/dating-de?clickid={{conversions_tracking}}"
    wait_for_link(server, "dating-de")

    path = urllib.parse.urlsplit(link.replace("{conversions_tracking}", "exo-777")).path
    visit = proxy.request(f"{path}?clickid=exo-777", https=True)
    assert visit.status == 302
    offer = urllib.parse.urlsplit(visit.headers["location"])
    subid = urllib.parse.parse_qs(offer.query)["sub"][0]
    key = cli(server, "postback-key", "show").splitlines()[0]
    sale = proxy.request(f"/{key}/postback?subid={subid}&status=sale&payout=4.50", https=True)
    assert sale.status == 200

    deadline = time.monotonic() + 30
    while not seen:
        assert time.monotonic() < deadline, "the S2S postback never reached the source"
        time.sleep(0.2)
    assert seen == ["/s2s?cid=exo-777&p=4.5"]
    delivery = json.loads(cli(server, "deliveries", "list", "--format", "json"))
    assert (delivery["state"], delivery["subid"]) == ("delivered", subid)
    conversion = json.loads(cli(server, "conversions", "list", "--subid", subid))
    assert (conversion["type"], conversion["payout"]) == ("sale", "4.500000")

    for line in server.log_path.read_text().splitlines():
        if line.startswith("{"):
            assert {"time", "level", "logger", "message"} <= set(json.loads(line))
    scraped = proxy.request("/metrics", https=True, headers={"Authorization": f"Bearer {TOKEN}"})
    assert scraped.status == 200
    assert proxy.request("/metrics", https=True).status == 401

    backup = tmp_path / "clickloop.backup"
    cli(server, "backup", str(backup))
    restored = tmp_path / "restored"
    env = {**server.env, "CLICKLOOP_DATA_DIR": str(restored), "CLICKLOOP_DATABASE_URL": fresh_url}
    for args in (["restore", str(backup)], ["conversions", "list", "--format", "json"]):
        done = subprocess.run(
            [sys.executable, "-m", "clickloop.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["subid"] == subid
