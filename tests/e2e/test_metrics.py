"""`/metrics` as Prometheus scrapes it: every worker process counted in each answer, only for
the metrics token, with latency histograms and the S2S queue depth."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.mmap_dict import MmapedDict
from sqlalchemy.engine import Engine

from clickloop.http.metrics import FLUSH_SECONDS, QUEUE_METRIC
from clickloop.services.outbox import queue_deliveries
from tests.conftest import Server, server_on
from tests.integration.test_outbox import NOW, make_world

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "scrape-me-7f3a"
CLICKS = 400


@pytest.fixture
def server_env() -> dict[str, str]:
    return {"CLICKLOOP_WORKERS": "2", "CLICKLOOP_METRICS_TOKEN": TOKEN}


def scrape(server: Server, token: str | None = TOKEN) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    request = urllib.request.Request(f"{server.base_url}/metrics", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def sample(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in the metrics"
    return float(found.group(1))


def clicks_per_process(metrics_dir: Path) -> dict[str, float]:
    """What each worker process wrote to its own file in the multiprocess directory."""
    counts = {}
    for path in metrics_dir.glob("counter_*.db"):
        values = MmapedDict.read_all_values_from_file(str(path))
        counts[path.stem] = sum(
            value
            for key, value, *_ in values
            if '"clickloop_clicks_total"' in key and "unknown_alias" in key
        )
    return counts


def test_every_scrape_sums_both_worker_processes(server: Server, engine: Engine) -> None:
    """Clicks spread over 2 worker processes: whichever process answers the scrape, the counter
    and the latency histogram hold them all, and the S2S queue depth is read."""
    world = make_world(engine)
    with engine.begin() as conn:
        queue_deliveries(conn, conversion_id=world.conversion_id, now=NOW)

    def click(_: int) -> int:
        try:
            urllib.request.urlopen(f"{server.base_url}/no-such-campaign", timeout=10)
        except urllib.error.HTTPError as answer:
            return answer.code
        return 200

    # The kernel hands connections to either process; a busy machine may give one all of a
    # round, so click in rounds until both have answered some. Each process writes its counts
    # to its file every FLUSH_SECONDS (and a click's latency just after its answer is sent).
    sent = 0
    for _ in range(20):
        with ThreadPoolExecutor(16) as pool:
            assert set(pool.map(click, range(CLICKS))) == {404}
        sent += CLICKS
        deadline = time.monotonic() + FLUSH_SECONDS + 5
        while (
            sum((per_process := clicks_per_process(server.data_dir / "metrics")).values()) != sent
        ):
            assert time.monotonic() < deadline, f"the files never counted {sent}: {per_process}"
            time.sleep(0.05)
        if all(per_process.values()) and len(per_process) == 2:
            break
    assert len([n for n in per_process.values() if n]) == 2, per_process
    deadline = time.monotonic() + FLUSH_SECONDS + 5
    while sample(scrape(server)[1], "clickloop_click_seconds_count") != sent:
        assert time.monotonic() < deadline, "the latency histogram never counted every click"
        time.sleep(0.05)
    for _ in range(10):  # answered by one process or the other
        status, text = scrape(server)
        assert status == 200
        assert sample(text, 'clickloop_clicks_total{outcome="unknown_alias"}') == sent
        assert sample(text, "clickloop_click_seconds_count") == sent
        assert sample(text, 'clickloop_click_seconds_bucket{le="+Inf"}') == sent
        waiting = sample(text, 'clickloop_s2s_queue{state="queued"}') + sample(
            text, 'clickloop_s2s_queue{state="retrying"}'
        )
        assert waiting == 1


def test_the_grafana_dashboard_draws_metrics_that_exist() -> None:
    """Every metric the shipped dashboard queries is one that clickloop defines."""
    import clickloop.http.app
    import clickloop.sender.dispatcher  # noqa: F401  (the modules that define the metrics)

    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    queried = {
        re.sub(r"_(bucket|count|sum|total)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"clickloop_[a-z0-9_]+", target["expr"])
    }
    defined = {family.name for family in REGISTRY.collect()} | {QUEUE_METRIC}
    assert len(queried) == 8 and queried <= defined, queried - defined


def test_a_scrape_without_the_token_is_refused(server: Server) -> None:
    """No token or a wrong one: 401 and nothing of the metrics."""
    for token in (None, "wrong", TOKEN + "x", ""):
        status, text = scrape(server, token)
        assert status == 401
        assert "clickloop_" not in text


def test_metrics_are_off_without_a_token(database_url: str, tmp_path: Path, engine: Engine) -> None:
    """With no CLICKLOOP_METRICS_TOKEN the public port serves no metrics at all (403)."""
    server = server_on(database_url, tmp_path, {})
    server.start()
    try:
        status, text = scrape(server, "anything")
        assert (status, "CLICKLOOP_METRICS_TOKEN" in text) == (403, True)
    finally:
        server.stop()
