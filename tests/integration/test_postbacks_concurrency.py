"""Identical postbacks in concurrent transactions make exactly one conversion (SQLite and
PostgreSQL): the UNIQUE(subid, tid) constraint decides, and the loser re-reads the winner's row.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime

import pytest
from sqlalchemy import Table, func, select
from sqlalchemy.engine import Engine

from clickloop.services import postbacks as service
from clickloop.services.postbacks import PostbackResult, RawPostback
from clickloop.storage import tables as t
from clickloop.storage.db import writer_engine
from tests.postback_world import add_clicks, make_world

NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
THREADS = 8


def run_concurrently(engine: Engine, queries: list[str]) -> list[PostbackResult]:
    """Each query in its own thread and transaction, released together by a barrier."""
    writer = writer_engine(engine)
    with engine.connect() as conn:
        rules = service.load_rules(conn)
    barrier = threading.Barrier(len(queries))
    results: list[PostbackResult] = []
    errors: list[BaseException] = []

    def worker(query: str) -> None:
        raw = RawPostback(received_at=NOW, method="GET", query=query)
        try:
            barrier.wait(timeout=10)
            with writer.begin() as conn:
                results.append(service.process_postback(conn, raw, rules, now=NOW))
        except BaseException as exc:  # surfaced below with the failing query
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(q,)) for q in queries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def count(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.mark.parametrize("tid", ["", "T-1"])
def test_identical_concurrent_postbacks_make_one_conversion(engine: Engine, tid: str) -> None:
    """One request creates the conversion, the others are duplicates; each is logged once."""
    world = make_world(engine)
    add_clicks(engine, world, ["same"], offer_id=world.plain_offer_id)
    results = run_concurrently(engine, [f"subid=same&status=sale&payout=3&tid={tid}"] * THREADS)
    outcomes = Counter(str(r.outcome) for r in results)
    assert outcomes == {"accepted": 1, "duplicate": THREADS - 1}
    assert count(engine, t.conversions) == 1
    assert count(engine, t.received_postbacks) == THREADS
    assert len({r.conversion_id for r in results}) == 1


def test_concurrent_different_statuses_share_one_identity(engine: Engine) -> None:
    """Racing lead and sale postbacks for one identity still leave a single conversion."""
    world = make_world(engine)
    add_clicks(engine, world, ["race"], offer_id=world.plain_offer_id)
    queries = [f"subid=race&status={'sale' if n % 2 else 'lead'}" for n in range(THREADS)]
    results = run_concurrently(engine, queries)
    assert count(engine, t.conversions) == 1
    assert Counter(str(r.outcome) for r in results)["accepted"] == 1
    with engine.connect() as conn:
        final = conn.execute(select(t.conversions.c.type)).scalar_one()
    # A sale is never stale and a lead after it is, so the sale always ends up stored.
    assert final == "sale"
    ignored = {r.reason for r in results if str(r.outcome) == "ignored"}
    assert ignored <= {"stale status: lead after sale"}
