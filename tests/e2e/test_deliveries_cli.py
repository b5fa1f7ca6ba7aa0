"""`clickloop deliveries list|resend|resend-failed` as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.services.outbox import queue_deliveries
from clickloop.storage import tables as t
from tests.integration.test_outbox import NOW, add_deliveries, make_world


def cli(database_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CLICKLOOP_DATABASE_URL": database_url,
        "CLICKLOOP_DATA_DIR": str(tmp_path / "data"),
    }
    return subprocess.run(
        [sys.executable, "-m", "clickloop.cli", "deliveries", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def states(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        query = select(t.deliveries.c.state).order_by(t.deliveries.c.id)
        return list(conn.execute(query).scalars())


def test_list_masks_secrets_and_resend_requeues(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    """The log hides tokens; resend and resend-failed put failed deliveries back in the queue."""
    world = make_world(engine, source_url=None)
    ids = add_deliveries(
        world,
        [
            "https://api.telegram.org/bot123456:ABCdef_ghi/sendMessage?chat_id=1&text=x",
            "https://crm.example/hook?api_key=s3cret&cid=2",
            "https://crm.example/hook?cid=3",
        ],
    )
    with engine.begin() as conn:
        conn.execute(update(t.deliveries).values(state="failed", attempts=9))

    listed = cli(database_url, tmp_path, "list", "--state", "failed").stdout.splitlines()
    urls = [json.loads(line)["url"] for line in listed]
    assert urls == [
        "https://crm.example/hook?cid=3",
        "https://crm.example/hook?api_key=***&cid=2",
        "https://api.telegram.org/bot***/sendMessage?chat_id=1&text=x",
    ]

    assert "requeued 1 of 1" in cli(database_url, tmp_path, "resend", str(ids[0])).stdout
    assert states(engine) == ["queued", "failed", "failed"]
    assert "requeued 2 failed" in cli(database_url, tmp_path, "resend-failed").stdout
    assert states(engine) == ["queued", "queued", "queued"]
    with engine.connect() as conn:
        assert set(conn.execute(select(t.deliveries.c.attempts)).scalars()) == {0}


def test_list_names_and_filters_by_the_triggering_subid(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    """Each listed delivery names the subid whose conversion triggered it; --subid filters."""
    world = make_world(engine, source_url=None)
    add_deliveries(world, ["https://crm.example/hook?cid=1", "https://crm.example/hook?cid=2"])

    listed = cli(database_url, tmp_path, "list", "--subid", "sub1").stdout.splitlines()
    assert [json.loads(line)["subid"] for line in listed] == ["sub1", "sub1"]
    assert cli(database_url, tmp_path, "list", "--subid", "other").stdout == ""


def test_resend_rerender_uses_the_current_url(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    """`resend --rerender` queues the request rendered from the fixed URL and supersedes the
    old one; `resend-failed --rerender` does so for every failed delivery."""
    world = make_world(engine, source_url="https://ts.example/wrong?cid={external_id}")
    with engine.begin() as conn:
        queue_deliveries(conn, conversion_id=world.conversion_id, now=NOW)
    [old] = states_and_urls(engine)
    fixed = {"postback_url": "https://ts.example/right?cid={external_id}"}
    entities.update_entity(engine, "traffic_sources", world.source_id, fixed, now=NOW)

    out = cli(database_url, tmp_path, "resend", "--rerender", str(old[0])).stdout
    assert f"delivery {old[0]}: rendered again as delivery {old[0] + 1}" in out
    assert "requeued 1 of 1" in out
    assert states_and_urls(engine) == [
        (old[0], "superseded", "https://ts.example/wrong?cid=ext%201%2F2"),
        (old[0] + 1, "queued", "https://ts.example/right?cid=ext%201%2F2"),
    ]
    with engine.begin() as conn:
        conn.execute(update(t.deliveries).values(state="failed"))
    entities.update_entity(
        engine,
        "traffic_sources",
        world.source_id,
        {"postback_url": "https://ts.example/third"},
        now=NOW,
    )
    out = cli(database_url, tmp_path, "resend-failed", "--rerender").stdout
    # Both failed ones render to the same request now: one new delivery (dedup key).
    assert "requeued 1 failed deliveries, rendered again" in out
    assert [state for _, state, _ in states_and_urls(engine)] == [
        "superseded",
        "superseded",
        "queued",
    ]


def states_and_urls(engine: Engine) -> list[tuple[int, str, str]]:
    with engine.connect() as conn:
        query = select(t.deliveries.c.id, t.deliveries.c.state, t.deliveries.c.url)
        return [tuple(row) for row in conn.execute(query.order_by(t.deliveries.c.id))]
