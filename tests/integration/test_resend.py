"""Resending deliveries as stored or rendered again from the current configuration."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.engine import Engine

from clickloop.domain.deliveries import Delivered, GiveUp
from clickloop.services import deliveries, entities
from clickloop.storage import tables as t
from tests.integration.test_outbox import NOW, World, claim, make_world, queue, record, rows

LATER = NOW + timedelta(hours=1)
WRONG = "https://ts.example/wrong?cid={external_id}"
RIGHT = "https://ts.example/right?cid={external_id}&st={status}"


def fix_source_url(world: World, url: str = RIGHT) -> None:
    entities.update_entity(
        world.engine, "traffic_sources", world.source_id, {"postback_url": url}, now=NOW
    )


def states_and_urls(engine: Engine) -> list[tuple[str, str]]:
    return [(r.state, r.url) for r in rows(engine)]


def test_plain_resend_sends_the_stored_url_again(engine: Engine) -> None:
    """Without rerender, a resend after the URL was fixed still queues the old rendered URL."""
    world = make_world(engine, source_url=WRONG)
    queue(world)
    record(engine, claim(engine), GiveUp(reason="http_status: HTTP 404"))
    fix_source_url(world)
    [old] = rows(engine)
    resent = deliveries.resend(engine, [old.id], now=LATER)
    assert (resent.queued, resent.skipped) == ({old.id: old.id}, {})
    assert states_and_urls(engine) == [("queued", "https://ts.example/wrong?cid=ext%201%2F2")]


def test_rerender_supersedes_the_wrong_delivery(engine: Engine) -> None:
    """A rerender queues the corrected request as a new delivery and retires the one still
    retrying the wrong URL, so that it is never claimed again."""
    world = make_world(engine, source_url=WRONG)
    queue(world)
    [old] = rows(engine)
    fix_source_url(world)
    resent = deliveries.resend(engine, [old.id], now=LATER, rerender=True)
    [_, new] = rows(engine)
    assert (resent.queued, resent.skipped) == ({old.id: new.id}, {})
    assert states_and_urls(engine) == [
        ("superseded", "https://ts.example/wrong?cid=ext%201%2F2"),
        ("queued", "https://ts.example/right?cid=ext%201%2F2&st=sale"),
    ]
    assert rows(engine)[0].last_error == f"superseded by delivery {new.id}"
    assert [c.id for c in claim(engine, now=LATER + timedelta(days=2))] == [new.id]


def test_rerender_of_an_unchanged_request_requeues_the_same_delivery(engine: Engine) -> None:
    """Same configuration, same request: the dedup key finds the delivery itself, requeued."""
    world = make_world(engine, source_url=RIGHT)
    queue(world)
    record(engine, claim(engine), GiveUp(reason="x"))
    [only] = rows(engine)
    resent = deliveries.resend(engine, [only.id], now=LATER, rerender=True)
    assert resent.queued == {only.id: only.id}
    assert [(r.state, r.attempts) for r in rows(engine)] == [("queued", 0)]


def test_rerender_identical_to_another_delivery_requeues_that_one(engine: Engine) -> None:
    """A request already queued once (dedup key) is requeued rather than inserted twice."""
    world = make_world(engine, source_url=RIGHT)
    queue(world)
    record(engine, claim(engine), Delivered())
    fix_source_url(world, WRONG)
    with engine.begin() as conn:  # a second state of the conversion, rendered with WRONG
        conn.execute(update(t.conversions).values(payout=3))
    queue(world)
    fix_source_url(world, RIGHT)
    with engine.begin() as conn:
        conn.execute(update(t.conversions).values(payout=12.5))
    first, wrong = rows(engine)
    resent = deliveries.resend(engine, [wrong.id], now=LATER, rerender=True)
    assert resent.queued == {wrong.id: first.id}
    assert [r.state for r in rows(engine)] == ["queued", "superseded"]


def test_rerender_of_a_delivered_one_keeps_its_history(engine: Engine) -> None:
    """A delivered delivery stays delivered; the rendered request goes out as a new one."""
    world = make_world(engine, source_url=WRONG)
    queue(world)
    record(engine, claim(engine), Delivered())
    fix_source_url(world)
    [old] = rows(engine)
    resent = deliveries.resend(engine, [old.id], now=LATER, rerender=True)
    assert [r.state for r in rows(engine)] == ["delivered", "queued"]
    assert resent.queued == {old.id: rows(engine)[1].id}


def test_rerender_skips_what_no_longer_applies(engine: Engine) -> None:
    """A target that no longer sends the conversion's status, a delivery in flight and an
    unknown id are skipped, each with its reason, and nothing changes."""
    world = make_world(engine, source_url=WRONG)
    queue(world)
    [old] = rows(engine)
    entities.update_entity(
        engine, "traffic_sources", world.source_id, {"postback_statuses": ["lead"]}, now=NOW
    )
    resent = deliveries.resend(engine, [old.id, 999999], now=LATER, rerender=True)
    assert resent.queued == {}
    assert resent.skipped == {
        old.id: "its target no longer sends sale conversions",
        999999: deliveries.NOT_RESENDABLE,
    }
    claim(engine, now=LATER)
    assert deliveries.resend(engine, [old.id], now=LATER, rerender=True).skipped == {
        old.id: deliveries.NOT_RESENDABLE
    }
    assert [r.state for r in rows(engine)] == ["queued"]


def test_resend_failed_rerendered(engine: Engine) -> None:
    """Every failed delivery is rendered again; the failed ones are superseded."""
    world = make_world(engine, source_url=WRONG)
    queue(world)
    record(engine, claim(engine), GiveUp(reason="http_status: HTTP 404"))
    fix_source_url(world)
    assert deliveries.resend_failed(engine, now=LATER, rerender=True) == 1
    assert states_and_urls(engine) == [
        ("superseded", "https://ts.example/wrong?cid=ext%201%2F2"),
        ("queued", "https://ts.example/right?cid=ext%201%2F2&st=sale"),
    ]
    assert deliveries.resend_failed(engine, now=LATER, rerender=True) == 0
