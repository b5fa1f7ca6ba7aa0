"""Postback batches of several writers (server workers or nodes) on overlapping subids never
deadlock: each batch locks its clicks in subid order before it touches their conversions.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from clickloop.domain.postbacks import Outcome
from clickloop.services import postbacks as service
from clickloop.services.postback_batches import PendingPostback, process_postbacks
from clickloop.services.postbacks import PostbackResult, RawPostback
from clickloop.storage import tables as t
from clickloop.storage.db import writer_engine
from tests.postback_world import add_clicks, make_world

NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
SUBIDS = [f"dl{n:02d}" for n in range(24)]
ROUNDS = 30


def pending(engine: Engine, queries: list[str]) -> list[PendingPostback]:
    with engine.connect() as conn:
        rules = service.load_rules(conn)
    raws = [RawPostback(received_at=NOW, method="GET", query=q) for q in queries]
    return [PendingPostback(raw=r, rules=rules, parsed=service.parse_raw(r, rules)) for r in raws]


def round_queries(number: int) -> list[str]:
    """A new conversion per subid; two of them also change their click."""
    return [
        f"subid={subid}&tid=r{number}&status=lead&payout=3"
        + (f"&sub_id_2=w{number}" if n % 12 == 0 else "")
        for n, subid in enumerate(SUBIDS)
    ]


def test_overlapping_batches_of_two_writers_never_deadlock(engine: Engine) -> None:
    """Two writers apply the same postbacks in opposite orders, round after round: none fails,
    every postback is logged, and each identity is stored once."""
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite commits one writer at a time: its transactions cannot deadlock")
    world = make_world(engine)
    add_clicks(engine, world, SUBIDS, offer_id=world.plain_offer_id)
    writer = writer_engine(engine)
    batches = [pending(engine, round_queries(n)) for n in range(ROUNDS)]
    barrier = threading.Barrier(2)
    results: list[PostbackResult] = []
    errors: list[BaseException] = []

    def worker(reverse: bool) -> None:
        for batch in batches:
            try:
                barrier.wait(timeout=30)
                with writer.begin() as conn:
                    done = process_postbacks(conn, batch[::-1] if reverse else batch, now=NOW)
                results.extend(done)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(reverse,)) for reverse in (False, True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors[:3]
    outcomes = Counter(result.outcome for result in results)
    internal = [r.reason for r in results if "internal error" in r.reason]
    assert not internal, internal[:3]
    assert len(results) == 2 * sum(len(batch) for batch in batches)
    assert outcomes[Outcome.ACCEPTED] == ROUNDS * len(SUBIDS)
    with engine.connect() as conn:
        logged = conn.execute(select(func.count()).select_from(t.received_postbacks)).scalar()
        stored = conn.execute(select(func.count()).select_from(t.conversions)).scalar()
    assert logged == len(results)
    assert stored == len(SUBIDS) * ROUNDS
