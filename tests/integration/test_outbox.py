"""The S2S outbox against a real migrated database: queueing, claiming, recording, health."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine

from clickloop.domain.deliveries import (
    Attempt,
    Delivered,
    DeliveryState,
    DisableTarget,
    ErrorKind,
    GiveUp,
    Outcome,
    Retry,
    TargetKind,
)
from clickloop.services import entities
from clickloop.services.outbox import queue_deliveries
from clickloop.storage import outbox
from clickloop.storage import tables as t

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
CLICK_TIME = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@dataclass
class World:
    engine: Engine
    source_id: int
    campaign_id: int
    offer_id: int
    conversion_id: int


def make_world(
    engine: Engine,
    *,
    source_url: str | None = "https://ts.example/pb?cid={external_id}&st={status}&p={payout}",
    source_statuses: tuple[str, ...] = (),
    postbacks: tuple[dict[str, Any], ...] = (),
    conversion_type: str = "sale",
) -> World:
    with engine.begin() as conn:
        source_id = entities.add_traffic_source(
            conn,
            name="Exo",
            now=NOW,
            postback_url=source_url,
            postback_statuses=source_statuses,
        )
        network_id = entities.add_affiliate_network(conn, name="Net One", now=NOW)
        offer_id = entities.add_offer(
            conn,
            name="Offer A",
            url="https://offer.example/?s={subid}",
            now=NOW,
            affiliate_network_id=network_id,
        )
        campaign_id = entities.add_campaign(
            conn,
            name="Camp & Co",
            alias="camp",
            now=NOW,
            offers=[(offer_id, 100)],
            traffic_source_id=source_id,
            postbacks=postbacks,
        )
        conn.execute(
            insert(t.clicks).values(
                subid="sub1",
                created_at=CLICK_TIME,
                campaign_id=campaign_id,
                offer_id=offer_id,
                traffic_source_id=source_id,
                external_id="ext 1/2",
                keyword="blue shoes",
                cost=Decimal("0.25"),
                sub_id_7="seven",
                extra={"device_id": "dev-9", "status": "shadowed"},
                country="DE",
            )
        )
        conversion_id = conn.execute(
            insert(t.conversions)
            .values(
                subid="sub1",
                tid="",
                type=conversion_type,
                original_status="approved",
                payout=Decimal("12.50"),
                currency="USD",
                original_payout=Decimal("12.50"),
                original_currency="USD",
                rate="1",
                cost=None,
                campaign_id=campaign_id,
                offer_id=offer_id,
                traffic_source_id=source_id,
                params={},
                converted_at=NOW,
                created_at=NOW,
                updated_at=NOW,
            )
            .returning(t.conversions.c.id)
        ).scalar_one()
    return World(engine, source_id, campaign_id, offer_id, conversion_id)


def queue(world: World) -> int:
    with world.engine.begin() as conn:
        return queue_deliveries(conn, conversion_id=world.conversion_id, now=NOW)


def rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(t.deliveries).order_by(t.deliveries.c.id)))


def test_traffic_source_postback_is_rendered_and_queued(engine: Engine) -> None:
    """The source's S2S URL is rendered with URL-encoded click and conversion values."""
    world = make_world(engine)
    assert queue(world) == 1
    [row] = rows(engine)
    assert row.url == "https://ts.example/pb?cid=ext%201%2F2&st=sale&p=12.5"
    assert (row.method, row.state, row.attempts, row.target_kind) == (
        "GET",
        "queued",
        0,
        "traffic_source",
    )
    assert row.next_attempt_at == NOW


def test_every_macro_has_a_value(engine: Engine) -> None:
    """Click, conversion and entity macros, custom parameters and dates all render."""
    template = (
        "https://crm.example/?a={subid}|{external_id}|{_keyword}|{sub_id_7}|{device_id}"
        "|{country}|{cost}|{date:Y-m-d H:i:s}|{status}|{status:lead=0 sale=1}|{original_status}"
        "|{tid}|{payout}|{revenue}|{conversion_revenue}|{conversion_cost}|{profit}|{currency}"
        "|{conversion_time:U}|{campaign_id}|{_campaign_name}|{offer_id}|{_offer_name}|{ts_id}"
        "|{traffic_source_name}|{_affiliate_network_name}"
    )
    world = make_world(engine, source_url=None, postbacks=({"url": template},))
    queue(world)
    [row] = rows(engine)
    query = urlsplit(row.url).query
    assert query.split("|") == [
        "a=sub1",
        "ext%201%2F2",
        "blue shoes",
        "seven",
        "dev-9",
        "DE",
        "0.25",
        "2026-03-01%2012%3A00%3A00",
        "sale",  # the click's custom "status" does not shadow the conversion's
        "1",
        "approved",
        "",
        "12.5",
        "12.5",
        "12.5",
        "",
        "12.25",
        "USD",
        str(int(NOW.timestamp())),
        str(world.campaign_id),
        "Camp & Co",
        str(world.offer_id),
        "Offer A",
        str(world.source_id),
        "Exo",
        "Net One",
    ]
    assert row.warnings == []


def test_telegram_example_is_encoded(engine: Engine) -> None:
    """The reference's Telegram URL yields a text parameter that decodes to the intended text."""
    url = (
        "https://api.telegram.org/bot123:ABC/sendMessage?chat_id=42"
        "&text={campaign_name}:{status}:{conversion_revenue}"
    )
    world = make_world(engine, source_url=None, postbacks=({"url": url},))
    queue(world)
    [row] = rows(engine)
    assert row.url.endswith("&text=Camp%20%26%20Co:sale:12.5")
    assert parse_qs(urlsplit(row.url).query)["text"] == ["Camp & Co:sale:12.5"]


def test_unknown_macro_renders_empty_with_a_warning(engine: Engine) -> None:
    """A typo in a template sends an empty value and records the macro on the delivery."""
    world = make_world(engine, source_url="https://ts.example/?c={externa_id}&s={status}")
    queue(world)
    [row] = rows(engine)
    assert row.url == "https://ts.example/?c=&s=sale"
    assert row.warnings == ["externa_id"]


@pytest.mark.parametrize(
    ("source_statuses", "postback_statuses", "conversion_type", "expected"),
    [
        ((), [], "sale", 2),
        (("sale",), ["lead"], "sale", 1),
        (("Lead", "rejected"), ["lead"], "lead", 2),
        (("lead",), ["rejected"], "sale", 0),
    ],
)
def test_status_filter(
    engine: Engine,
    source_statuses: tuple[str, ...],
    postback_statuses: list[str],
    conversion_type: str,
    expected: int,
) -> None:
    """A target receives only the statuses it asks for; an empty list means all of them."""
    world = make_world(
        engine,
        source_statuses=source_statuses,
        postbacks=({"url": "https://crm.example/?s={status}", "statuses": postback_statuses},),
        conversion_type=conversion_type,
    )
    assert queue(world) == expected


def test_dedup_skips_identical_requests_and_queues_changed_ones(engine: Engine) -> None:
    """Re-queueing the same state adds nothing; a changed payout queues a new request."""
    world = make_world(engine)
    assert queue(world) == 1
    assert queue(world) == 0
    with engine.begin() as conn:
        conn.execute(
            update(t.conversions)
            .where(t.conversions.c.id == world.conversion_id)
            .values(payout=Decimal("20"))
        )
    assert queue(world) == 1
    assert [r.url.rsplit("&p=", 1)[1] for r in rows(engine)] == ["12.5", "20"]


def test_random_macro_does_not_defeat_dedup(engine: Engine) -> None:
    """{random} renders the same for the same delivery, so a re-queue is still a duplicate."""
    world = make_world(engine, source_url="https://ts.example/?r={random:1,1000000}")
    assert queue(world) == 1
    assert queue(world) == 0


def test_post_sends_the_query_as_a_form_body(engine: Engine) -> None:
    """POST without a body template moves the rendered query into a form body."""
    postback = {"url": "https://crm.example/hook?cid={subid}&k={keyword}", "method": "POST"}
    world = make_world(engine, source_url=None, postbacks=(postback,))
    queue(world)
    [row] = rows(engine)
    assert (row.method, row.url, row.body, row.content_type) == (
        "POST",
        "https://crm.example/hook",
        "cid=sub1&k=blue%20shoes",
        "application/x-www-form-urlencoded",
    )


def test_post_json_body_template_is_json_escaped(engine: Engine) -> None:
    """A JSON body template gets JSON-escaped values and stays valid JSON."""
    postback = {
        "url": "https://crm.example/hook?src={subid}",
        "method": "POST",
        "body": '{"name": "{campaign_name}", "ua": "{user_agent}", "p": {payout}}',
    }
    world = make_world(engine, source_url=None, postbacks=(postback,))
    with engine.begin() as conn:
        conn.execute(update(t.campaigns).values(name='Say "hi"\\ now'))
    queue(world)
    [row] = rows(engine)
    assert row.url == "https://crm.example/hook?src=sub1"
    assert row.content_type == "application/json"
    assert json.loads(row.body) == {"name": 'Say "hi"\\ now', "ua": "", "p": 12.5}


def test_disabled_target_queues_parked_deliveries(engine: Engine) -> None:
    """A conversion for a disabled target is kept, parked until the target is enabled."""
    world = make_world(engine)
    with engine.begin() as conn:
        conn.execute(update(t.traffic_sources).values(postback_enabled=False))
    queue(world)
    assert [r.state for r in rows(engine)] == ["disabled"]
    with engine.begin() as conn:
        resumed = outbox.enable_target(
            conn, kind=TargetKind.TRAFFIC_SOURCE, target_id=world.source_id, now=NOW
        )
    assert resumed == 1
    assert [r.state for r in rows(engine)] == ["queued"]


# --- claiming and recording -------------------------------------------------------------------


def add_deliveries(
    world: World, urls: list[str], *, now: datetime = NOW, enabled: bool = True
) -> list[int]:
    new = [
        outbox.NewDelivery(
            conversion_id=world.conversion_id,
            target_kind=TargetKind.TRAFFIC_SOURCE,
            target_id=world.source_id,
            method="GET",
            url=url,
            body=None,
            content_type=None,
            response_must_contain=None,
            dedup_key=hashlib.sha256(url.encode()).hexdigest(),
            warnings=(),
            enabled=enabled,
        )
        for url in urls
    ]
    with world.engine.begin() as conn:
        outbox.insert_deliveries(conn, new, now=now)
    return [r.id for r in rows(world.engine) if r.url in urls]


def claim(
    engine: Engine, *, now: datetime = NOW, limit: int = 100, worker: str = "w1"
) -> list[Any]:
    with engine.begin() as conn:
        return outbox.claim_due(conn, worker=worker, now=now, limit=limit)


def attempt(outcome: Outcome, status: int | None = 200) -> Attempt:
    failed = not isinstance(outcome, Delivered)
    return Attempt(
        started_at=NOW,
        url="u",
        status_code=status,
        latency_ms=3,
        response="body",
        error_kind=ErrorKind.HTTP_STATUS if failed else None,
        error="HTTP 500" if failed else None,
        outcome=outcome,
    )


def record(engine: Engine, claims: list[Any], outcome: Outcome, *, now: datetime = NOW) -> Any:
    with engine.begin() as conn:
        return outbox.record_attempts(
            conn, [(c, attempt(outcome)) for c in claims], worker="w1", now=now
        )


def test_first_attempts_go_ahead_of_retries(engine: Engine) -> None:
    """A new delivery is claimed before an older retry when room is short."""
    world = make_world(engine, source_url=None)
    [old] = add_deliveries(world, ["https://a.example/old"], now=NOW - timedelta(hours=1))
    record(engine, claim(engine), Retry(at=NOW - timedelta(minutes=1), reason="x"))
    [new] = add_deliveries(world, ["https://a.example/new"])
    assert [c.id for c in claim(engine, limit=1)] == [new]
    assert [c.id for c in claim(engine, limit=1)] == [old]


def test_claims_are_leased_and_expire(engine: Engine) -> None:
    """A claimed delivery is invisible to other workers until its lease runs out."""
    world = make_world(engine, source_url=None)
    add_deliveries(world, ["https://a.example/1", "https://a.example/2"])
    assert len(claim(engine, worker="w1")) == 2
    assert claim(engine, worker="w2") == []
    later = NOW + outbox.DEFAULT_LEASE + timedelta(seconds=1)
    taken = claim(engine, worker="w2", now=later)
    assert len(taken) == 2
    with engine.connect() as conn:
        holders = set(conn.execute(select(t.deliveries.c.claimed_by)).scalars())
    assert holders == {"w2"}


def test_not_yet_due_is_not_claimed(engine: Engine) -> None:
    """A retry scheduled for later stays in the queue until its time."""
    world = make_world(engine, source_url=None)
    add_deliveries(world, ["https://a.example/1"])
    record(engine, claim(engine), Retry(at=NOW + timedelta(minutes=5), reason="x"))
    assert claim(engine, now=NOW + timedelta(minutes=4)) == []
    assert len(claim(engine, now=NOW + timedelta(minutes=5))) == 1


def test_any_due_tells_an_idle_poll_whether_to_claim(engine: Engine) -> None:
    """any_due is true exactly when claim_due would find something: not for leased or
    later deliveries."""

    def due(now: datetime) -> bool:
        with engine.connect() as conn:
            return outbox.any_due(conn, now=now)

    world = make_world(engine, source_url=None)
    assert not due(NOW)
    add_deliveries(world, ["https://a.example/1"])
    assert due(NOW)
    claimed = claim(engine)
    assert not due(NOW) and due(NOW + outbox.DEFAULT_LEASE + timedelta(seconds=1))
    record(engine, claimed, Retry(at=NOW + timedelta(minutes=5), reason="x"))
    assert not due(NOW + timedelta(minutes=4)) and due(NOW + timedelta(minutes=5))


@pytest.mark.parametrize(
    ("outcome", "state", "attempts"),
    [
        (Delivered(), DeliveryState.DELIVERED, 1),
        (Retry(at=NOW, reason="x"), DeliveryState.QUEUED, 1),
        (GiveUp(reason="x"), DeliveryState.FAILED, 1),
        (DisableTarget(reason="gone"), DeliveryState.DISABLED, 1),
    ],
)
def test_recording_moves_the_delivery_on(
    engine: Engine, outcome: Outcome, state: DeliveryState, attempts: int
) -> None:
    """Each outcome leaves the delivery in its state, unclaimed, with one attempt row."""
    world = make_world(engine, source_url=None)
    add_deliveries(world, ["https://a.example/1"])
    record(engine, claim(engine), outcome)
    [row] = rows(engine)
    assert (row.state, row.attempts, row.claimed_by) == (state, attempts, None)
    with engine.connect() as conn:
        logged = conn.execute(
            select(func.count()).where(t.delivery_attempts.c.delivery_id == row.id)
        ).scalar_one()
    assert logged == 1


def test_410_disables_the_target_and_parks_its_queue(engine: Engine) -> None:
    """A 410 switches the target off with a reason; its other queued deliveries wait."""
    world = make_world(engine, source_url=None)
    add_deliveries(world, ["https://a.example/1", "https://a.example/2"])
    claims = claim(engine, limit=1)
    disabled = record(engine, claims, DisableTarget(reason="http_status: HTTP 410"))
    assert disabled == [
        outbox.DisabledTarget(
            kind=TargetKind.TRAFFIC_SOURCE, id=world.source_id, reason="http_status: HTTP 410"
        )
    ]
    assert [r.state for r in rows(engine)] == ["disabled", "disabled"]
    assert claim(engine) == []
    with engine.begin() as conn:
        conn.execute(update(t.traffic_sources).values(postback_enabled=True))
        assert outbox.resume_enabled_targets(conn, now=NOW) == 2
    assert len(claim(engine)) == 2


def test_target_failing_for_days_is_disabled(engine: Engine) -> None:
    """No success for three days disables the target; a success in between resets the clock."""
    world = make_world(engine, source_url=None)
    urls = [f"https://a.example/{n}" for n in range(4)]
    add_deliveries(world, urls)
    fail = Retry(at=NOW, reason="http_status: HTTP 500")
    assert record(engine, claim(engine, limit=1), fail) == []
    day2 = NOW + timedelta(days=2)
    assert record(engine, claim(engine, limit=1, now=day2), fail, now=day2) == []
    day3 = NOW + timedelta(days=3)
    disabled = record(engine, claim(engine, limit=1, now=day3), fail, now=day3)
    assert [d.id for d in disabled] == [world.source_id]
    with engine.connect() as conn:
        assert outbox.list_disabled_targets(conn)[0].reason.startswith("no successful delivery")


def test_success_resets_failing_since(engine: Engine) -> None:
    """A delivered attempt clears the failure streak of its target."""
    world = make_world(engine, source_url=None)
    add_deliveries(world, ["https://a.example/1", "https://a.example/2"])
    record(engine, claim(engine, limit=1), Retry(at=NOW, reason="x"))
    day = NOW + timedelta(days=1)
    record(engine, claim(engine, limit=1, now=day), Delivered(), now=day)
    with engine.connect() as conn:
        source = conn.execute(select(t.traffic_sources)).one()
    assert (source.failing_since, source.last_success_at) == (None, day)


def test_resend_and_resend_failed(engine: Engine) -> None:
    """Resend requeues one delivery with a fresh schedule; resend-failed requeues all failed."""
    world = make_world(engine, source_url=None)
    ids = add_deliveries(
        world, ["https://a.example/1", "https://a.example/2", "https://a.example/3"]
    )
    record(engine, claim(engine, limit=2), GiveUp(reason="x"))
    record(engine, claim(engine), Delivered())
    later = NOW + timedelta(hours=1)
    with engine.begin() as conn:
        assert outbox.resend(conn, delivery_ids=[ids[2]], now=later) == [ids[2]]
    assert [(r.state, r.attempts) for r in rows(engine)] == [
        ("failed", 1),
        ("failed", 1),
        ("queued", 0),
    ]
    with engine.begin() as conn:
        assert outbox.resend_failed(conn, now=later) == 2
        assert outbox.count_by_state(conn) == {"queued": 3}


def test_resend_does_not_touch_a_delivery_in_flight(engine: Engine) -> None:
    """A delivery another dispatcher holds is not requeued under it."""
    world = make_world(engine, source_url=None)
    [only] = add_deliveries(world, ["https://a.example/1"])
    claim(engine)
    with engine.begin() as conn:
        assert outbox.resend(conn, delivery_ids=[only], now=NOW) == []


def test_stale_lease_holder_cannot_overwrite_state(engine: Engine) -> None:
    """A worker whose lease was taken over logs its attempt but leaves the state alone."""
    world = make_world(engine, source_url=None)
    add_deliveries(world, ["https://a.example/1"])
    stale = claim(engine, worker="w1")
    claim(engine, worker="w2", now=NOW + timedelta(minutes=5))
    record(engine, stale, GiveUp(reason="x"))
    [row] = rows(engine)
    assert (row.state, row.claimed_by) == ("queued", "w2")


def test_retry_recorded_after_the_target_went_off_is_parked(engine: Engine) -> None:
    """An attempt in flight while its target was disabled does not slip back into the queue."""
    world = make_world(engine, source_url=None)
    add_deliveries(world, ["https://a.example/1", "https://a.example/2"])
    first, second = claim(engine)
    record(engine, [first], DisableTarget(reason="http_status: HTTP 410"))
    assert record(engine, [second], Retry(at=NOW, reason="timeout")) == []
    assert [r.state for r in rows(engine)] == ["disabled", "disabled"]
