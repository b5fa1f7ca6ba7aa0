"""Postbacks applied together in one writer batch: the same outcomes as one by one, and the
fallback to one by one when applying them together fails."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from clickloop.domain.postbacks import Outcome
from clickloop.errors import StorageUnavailable
from clickloop.services import entities
from clickloop.services import postbacks as service
from clickloop.services.postback_batches import PendingPostback, process_postbacks
from clickloop.services.postbacks import PostbackResult, RawPostback
from clickloop.storage import conversion_batches as batches
from clickloop.storage import conversions as repo
from clickloop.storage import tables as t
from clickloop.storage.sqlite_driver import sqlite3
from tests.postback_world import World, add_clicks, make_world_with_clicks

NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
def world(engine: Engine) -> World:
    return make_world_with_clicks(engine, now=NOW)


def batch_of(engine: Engine, queries: list[str]) -> list[PendingPostback]:
    with engine.connect() as conn:
        rules = service.load_rules(conn)
    raws = [RawPostback(received_at=NOW, method="GET", query=q) for q in queries]
    return [
        PendingPostback(raw=raw, rules=rules, parsed=service.parse_raw(raw, rules)) for raw in raws
    ]


def run_batch(engine: Engine, queries: list[str]) -> list[PostbackResult]:
    batch = batch_of(engine, queries)
    with engine.begin() as conn:
        return process_postbacks(conn, batch, now=NOW)


def one_by_one(engine: Engine, queries: list[str]) -> list[PostbackResult]:
    results = []
    for query in queries:
        raw = RawPostback(received_at=NOW, method="GET", query=query)
        with engine.begin() as conn:
            results.append(service.process_postback(conn, raw, service.load_rules(conn), now=NOW))
    return results


def stored(engine: Engine) -> list[dict[str, Any]]:
    """Conversions and log rows without ids and times: what a run leaves behind."""
    with engine.connect() as conn:
        conversions = [
            {k: v for k, v in row._mapping.items() if k not in ("id", "created_at", "updated_at")}
            for row in conn.execute(select(t.conversions).order_by(t.conversions.c.id))
        ]
        logs = [
            (row.subid, row.outcome, row.reason, row.conversion_id is not None)
            for row in conn.execute(
                select(t.received_postbacks).order_by(t.received_postbacks.c.id)
            )
        ]
    return [*conversions, *logs]


# Within one batch: a new conversion, its update, a re-send of that update, a stale lead, a sale
# and its upsell on the same click, an unknown click, a parse error, an ignored status and a
# click field overwrite.
MIXED = [
    "subid=pl1&status=lead&tid=a&payout=3",
    "subid=pl1&status=approved&tid=a&payout=4&currency=eur",
    "subid=pl1&status=approved&tid=a&payout=4&currency=eur",
    "subid=pl1&status=lead&tid=a",
    "subid=up1&status=sale&tid=s1",
    "subid=up1&status=sale&tid=s2&sub_id_3=zone9&cost=0.5",
    "subid=nope&status=sale",
    "subid=pl2&status=sale&payout=1e3",
    "subid=pl2&status=mystery",
    "subid=pl2&status=lead&keyword=kw&from=net",
    "subid=pl2&status=declined",
]


def test_a_batch_leaves_what_one_by_one_leaves(
    engine: Engine, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Decisions inside one batch see the batch's own earlier changes, exactly as separate
    transactions would: the same outcomes, conversions, click fields and log rows."""
    together = run_batch(engine, MIXED)
    assert not caplog.records  # applied together, not by the one-by-one fallback
    left_together = stored(engine)
    with engine.connect() as conn:
        clicks_together = [
            dict(row._mapping) for row in conn.execute(select(t.clicks).order_by(t.clicks.c.subid))
        ]
    with engine.begin() as conn:
        for table in (t.received_postbacks, t.conversions, t.clicks):
            conn.execute(table.delete())
    add_clicks(engine, world, ["up1", "up2"], offer_id=world.upsell_offer_id)
    add_clicks(engine, world, ["pl1", "pl2"], offer_id=world.plain_offer_id)
    separate = one_by_one(engine, MIXED)
    assert [(r.outcome, r.reason) for r in together] == [(r.outcome, r.reason) for r in separate]
    assert [r.outcome for r in together] == [
        Outcome.ACCEPTED,
        Outcome.UPDATED,
        Outcome.DUPLICATE,
        Outcome.IGNORED,
        Outcome.ACCEPTED,
        Outcome.ACCEPTED,
        Outcome.IGNORED,
        Outcome.IGNORED,
        Outcome.IGNORED,
        Outcome.ACCEPTED,
        Outcome.UPDATED,
    ]
    assert left_together == stored(engine)
    with engine.connect() as conn:
        clicks_separate = [
            dict(row._mapping) for row in conn.execute(select(t.clicks).order_by(t.clicks.c.subid))
        ]
    assert clicks_together == clicks_separate
    assert [c["type"] for c in left_together[:4]] == ["sale", "sale", "rebill", "rejected"]


def test_results_point_at_their_log_rows_and_conversions(engine: Engine, world: World) -> None:
    """Each result carries its own log row's id and the conversion that row points to."""
    results = run_batch(engine, ["subid=pl1&status=lead", "subid=nope&status=sale", *MIXED[:3]])
    with engine.connect() as conn:
        rows = {row.id: row for row in conn.execute(select(t.received_postbacks))}
    for result in results:
        assert rows[result.log_id].outcome == result.outcome
        assert rows[result.log_id].conversion_id == result.conversion_id
    assert results[2].conversion_id == results[3].conversion_id == results[4].conversion_id


def test_s2s_is_queued_only_for_clicks_with_targets(engine: Engine, world: World) -> None:
    """Conversions of a campaign whose source has an S2S URL queue it, each state once and with
    the click as it was then (also two states in one batch); the others queue nothing."""
    source = entities.create_traffic_source(
        engine,
        name="Src",
        now=NOW,
        postback_url="https://ts.test/pb?cid={subid}&s={status}&k={keyword}",
    )
    campaign = entities.create_campaign(
        engine, name="With S2S", alias="s2s", now=NOW, offers=[(world.plain_offer_id, 1)],
        traffic_source_id=source,
    )  # fmt: skip
    add_clicks(engine, replace(world, campaign_id=campaign), ["s1"], offer_id=world.plain_offer_id)
    results = run_batch(
        engine,
        [
            "subid=s1&status=lead",
            "subid=pl1&status=lead",
            "subid=s1&status=sale&keyword=kw2",
            "subid=s1&status=sale&keyword=kw2",
        ],
    )
    assert results[-1].outcome == Outcome.DUPLICATE
    with engine.connect() as conn:
        urls = list(conn.execute(select(t.deliveries.c.url).order_by(t.deliveries.c.id)).scalars())
    assert urls == [
        "https://ts.test/pb?cid=s1&s=lead&k=original",
        "https://ts.test/pb?cid=s1&s=sale&k=kw2",
    ]


def test_targets_added_after_the_rules_were_read(engine: Engine, world: World) -> None:
    """Rules read before an S2S target was added do not make the batch skip the outbox."""
    batch = batch_of(engine, ["subid=pl1&status=lead"])
    source = entities.create_traffic_source(
        engine, name="Late", now=NOW, postback_url="https://ts.test/late?cid={subid}"
    )
    entities.update_entity(
        engine, "campaigns", world.campaign_id, {"traffic_source_id": source}, now=NOW
    )
    with engine.begin() as conn:
        process_postbacks(conn, batch, now=NOW)
    with engine.connect() as conn:
        urls = list(conn.execute(select(t.deliveries.c.url)).scalars())
    assert urls == ["https://ts.test/late?cid=pl1"]


def test_a_twin_that_took_the_identity_meanwhile(
    engine: Engine, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When another writer inserted the identity after the batch read it, the batch is redone
    one by one: the re-sent postback is a duplicate, nothing is doubled."""
    run_batch(engine, ["subid=pl1&status=lead&tid=x&payout=3"])
    monkeypatch.setattr(batches, "find_conversions", lambda conn, keys: {})
    results = run_batch(engine, ["subid=pl2&status=lead", "subid=pl1&status=lead&tid=x&payout=3"])
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.DUPLICATE]
    with engine.connect() as conn:
        payouts = list(conn.execute(select(t.conversions.c.payout)).scalars())
    assert sorted(payouts) == [Decimal(2), Decimal(3)]


def test_batch_isolates_a_failing_postback(
    engine: Engine, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that fails is applied one by one: the postback that crashes is undone alone and
    logged; the others commit."""
    real = repo.find_click

    def flaky(conn: Connection, subid: str) -> Any:
        if subid == "pl2":
            raise KeyError("boom")
        return real(conn, subid)

    def broken(conn: Connection, keys: Any) -> Any:
        raise KeyError("boom")

    monkeypatch.setattr(batches, "find_conversions", broken)
    monkeypatch.setattr(repo, "find_click", flaky)
    results = run_batch(
        engine, ["subid=pl1&status=sale", "subid=pl2&status=sale", "subid=up1&status=lead"]
    )
    assert [(r.outcome, r.reason) for r in results] == [
        (Outcome.ACCEPTED, ""),
        (Outcome.IGNORED, "KeyError: 'boom'"),
        (Outcome.ACCEPTED, ""),
    ]
    with engine.connect() as conn:
        subids = list(
            conn.execute(select(t.conversions.c.subid).order_by(t.conversions.c.id)).scalars()
        )
        reasons = list(
            conn.execute(
                select(t.received_postbacks.c.reason).order_by(t.received_postbacks.c.id)
            ).scalars()
        )
    assert subids == ["pl1", "up1"]
    assert reasons[1] == "internal error: KeyError: 'boom'"


@pytest.mark.parametrize("failing", ["find_clicks", "insert_received"])
def test_batch_aborts_when_the_database_fails(
    engine: Engine, world: World, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """A database failure mid-batch raises StorageUnavailable and nothing of the batch stays."""

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(batches, failing, fail)
    batch = batch_of(engine, ["subid=pl1&status=sale", "subid=pl2&status=sale"])
    with pytest.raises(StorageUnavailable), engine.begin() as conn:
        process_postbacks(conn, batch, now=NOW)
    assert stored(engine) == []
