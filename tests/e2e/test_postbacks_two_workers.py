"""Postbacks on overlapping subids sent at once to a server with two worker processes: every one
is answered 200 and recorded (on PostgreSQL their batches used to deadlock: 503s)."""

from __future__ import annotations

import http.client
import random
import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.storage import tables as t
from tests.conftest import Server
from tests.postback_world import add_clicks, make_world

pytestmark = pytest.mark.slow

SUBIDS = [f"w2s{n:02d}" for n in range(16)]
CLIENTS = 24
ROUNDS = 6


@pytest.fixture
def server_env() -> dict[str, str]:
    return {"CLICKLOOP_WORKERS": "2", "CLICKLOOP_EMBEDDED_WORKER": "false"}


def test_overlapping_postbacks_on_two_workers_are_all_recorded(
    server: Server, engine: Engine
) -> None:
    """Each client sends, round after round, the same new identities on every subid in its own
    order (network re-sends meeting each other): no 503, every postback logged."""
    world = make_world(engine)
    add_clicks(engine, world, SUBIDS, offer_id=world.plain_offer_id)
    key = entities.get_settings(engine)["postback_key"]
    barrier = threading.Barrier(CLIENTS)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def client(number: int) -> None:
        order = random.Random(number)
        try:
            for round_ in range(ROUNDS):
                targets = [
                    f"/{key}/postback?subid={subid}&tid=r{round_}&status=lead&payout=2"
                    for subid in SUBIDS
                ]
                order.shuffle(targets)
                barrier.wait(timeout=60)
                for target in targets:
                    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                    conn.request("GET", target)
                    statuses.append(conn.getresponse().status)
                    conn.close()
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors[:3]
    sent = CLIENTS * ROUNDS * len(SUBIDS)
    assert statuses.count(200) == sent, {s: statuses.count(s) for s in set(statuses)}
    with engine.connect() as conn:
        logged = conn.execute(select(func.count()).select_from(t.received_postbacks)).scalar()
        stored = conn.execute(select(func.count()).select_from(t.conversions)).scalar()
    assert logged == sent
    assert stored == ROUNDS * len(SUBIDS)
