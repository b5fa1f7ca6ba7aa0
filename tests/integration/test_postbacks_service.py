"""The postback use case against a real database: conversions, log, re-processing, import."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from clickloop.domain.postbacks import Outcome
from clickloop.errors import Conflict, InvalidInput, NotFound
from clickloop.services import entities, outbox
from clickloop.services import postbacks as service
from clickloop.services.postbacks import PostbackResult, RawPostback
from clickloop.services.rates import set_rate
from clickloop.storage import tables as t
from tests.postback_world import World, add_clicks, make_world_with_clicks

NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
def world(engine: Engine) -> World:
    return make_world_with_clicks(engine, now=NOW)


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Conversion ids handed to the outbox, in order (the real outbox still runs)."""
    calls: list[int] = []
    real = outbox.queue_deliveries

    def spy(conn: Connection, *, conversion_id: int, now: datetime) -> int:
        calls.append(conversion_id)
        return real(conn, conversion_id=conversion_id, now=now)

    monkeypatch.setattr(service, "queue_deliveries", spy)
    yield calls


def post(engine: Engine, query: str, **raw: Any) -> PostbackResult:
    request = RawPostback(
        received_at=raw.pop("received_at", NOW), method=raw.pop("method", "GET"), query=query, **raw
    )
    with engine.begin() as conn:
        return service.process_postback(
            conn, request, service.load_rules(conn), now=request.received_at
        )


def conversions(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(t.conversions).order_by(t.conversions.c.id))
        return [dict(row._mapping) for row in rows]


def log_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(t.received_postbacks).order_by(t.received_postbacks.c.id))
        return [dict(row._mapping) for row in rows]


def test_new_postback_creates_a_conversion_and_logs_it(
    engine: Engine, world: World, queued: list[int]
) -> None:
    """A first postback stores the conversion with converted payout and queues its S2S."""
    result = post(engine, "subid=pl1&status=approved&payout=10&currency=eur&tid=t1&from=net")
    assert (result.outcome, result.reason) == (Outcome.ACCEPTED, "")
    [row] = conversions(engine)
    assert row["id"] == result.conversion_id
    assert (row["subid"], row["tid"], row["type"], row["original_status"]) == (
        "pl1",
        "t1",
        "sale",
        "approved",
    )
    assert (row["payout"], row["currency"]) == (Decimal("11"), "USD")
    assert (row["original_payout"], row["original_currency"], row["rate"]) == (
        Decimal(10),
        "EUR",
        "1.1",
    )
    assert row["converted_at"] == NOW and row["campaign_id"] == world.campaign_id
    [entry] = log_rows(engine)
    assert entry["outcome"] == "accepted" and entry["conversion_id"] == row["id"]
    assert entry["query"].endswith("from=net") and entry["subid"] == "pl1"
    assert queued == [row["id"]]


def test_missing_payout_takes_the_offers_default(engine: Engine, world: World) -> None:
    """No payout on a new conversion means the offer's payout, converted (5 EUR → 5.5 USD)."""
    post(engine, "subid=up1&status=lead")
    [row] = conversions(engine)
    assert (row["payout"], row["original_payout"], row["original_currency"]) == (
        Decimal("5.5"),
        Decimal(5),
        "EUR",
    )


def test_same_identity_updates_and_duplicate_changes_nothing(
    engine: Engine, world: World, queued: list[int]
) -> None:
    """lead → sale updates; the same sale again is a duplicate with no S2S."""
    first = post(engine, "subid=pl1&status=lead&payout=3")
    second = post(engine, "subid=pl1&status=sale&payout=3")
    third = post(engine, "subid=pl1&status=SALE&payout=3.00")
    assert [first.outcome, second.outcome] == [Outcome.ACCEPTED, Outcome.UPDATED]
    assert third.outcome == Outcome.UPDATED  # the original status text changed: SALE
    fourth = post(engine, "subid=pl1&status=SALE&payout=3.00")
    assert fourth.outcome == Outcome.DUPLICATE
    [row] = conversions(engine)
    assert (row["type"], row["original_status"]) == ("sale", "SALE")
    assert queued == [row["id"]] * 3
    assert [e["outcome"] for e in log_rows(engine)] == [
        "accepted",
        "updated",
        "updated",
        "duplicate",
    ]


def test_late_lead_is_stale(engine: Engine, world: World, queued: list[int]) -> None:
    """A lead after a sale is logged as ignored and the sale stays."""
    post(engine, "subid=pl1&status=sale&payout=3")
    late = post(engine, "subid=pl1&status=lead&payout=1")
    assert (late.outcome, late.reason) == (Outcome.IGNORED, "stale status: lead after sale")
    assert conversions(engine)[0]["type"] == "sale"
    assert len(queued) == 1


@pytest.mark.parametrize(("offer", "second_type"), [("up1", "rebill"), ("pl1", "sale")])
def test_second_sale_with_new_tid(
    engine: Engine, world: World, offer: str, second_type: str
) -> None:
    """A new tid is a separate conversion; on an upsell offer a second sale is a rebill."""
    post(engine, f"subid={offer}&status=sale&payout=3")
    post(engine, f"subid={offer}&status=sale&payout=4&tid=2")
    assert [(r["tid"], r["type"]) for r in conversions(engine)] == [
        ("", "sale"),
        ("2", second_type),
    ]


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("status=sale", "subid missing"),
        ("subid=nosuch&status=sale", "subid not found: nosuch"),
        ("subid=pl1", "status missing"),
        ("subid=pl1&status=weird", "unknown status weird"),
        ("subid=pl1&status=sale&payout=ten", "payout is not a number: ten"),
        ("subid=pl1&status=sale&payout=1&currency=XYZ", "unknown currency: XYZ"),
    ],
)
def test_ignored_postbacks_are_logged_with_their_reason(
    engine: Engine, world: World, query: str, reason: str
) -> None:
    """Every ignored request lands in the log with its reason and creates nothing."""
    result = post(engine, query)
    assert (result.outcome, result.reason) == (Outcome.IGNORED, reason)
    assert conversions(engine) == []
    [entry] = log_rows(engine)
    assert (entry["outcome"], entry["reason"], entry["query"]) == ("ignored", reason, query)


def test_ignore_status_is_silent(engine: Engine, world: World) -> None:
    """A status in ignore_status is logged as ignored but marked silent (answered OK)."""
    result = post(engine, "subid=pl1&status=test&ignore_status=test")
    assert (result.outcome, result.silent) == (Outcome.IGNORED, True)


def test_aliases_and_trainings_from_settings(engine: Engine, world: World) -> None:
    """Configured aliases and global trainings apply; the network's trainings come first."""
    entities.update_settings(
        engine,
        {
            "aliases": {"clickid": "subid", "type": "status", "profit": "payout"},
            "status_trainings": {"lead": ["approved", "pending"]},
        },
    )
    post(engine, "CLICKID=pl1&Type=approved&profit=7")
    post(engine, "clickid=pl2&type=pending&revenue=1")
    rows = conversions(engine)
    assert [(r["subid"], r["type"], r["payout"]) for r in rows] == [
        ("pl1", "sale", Decimal(7)),
        ("pl2", "lead", Decimal(1)),
    ]


def test_click_fields_are_overwritten(engine: Engine, world: World) -> None:
    """sub_id_N, keyword and cost sent with a postback replace the click's values."""
    post(engine, "subid=pl1&status=lead&sub_id_1=zone9&keyword=shoes&cost=0.3&extra_param_1=x")
    with engine.connect() as conn:
        click = conn.execute(select(t.clicks).where(t.clicks.c.subid == "pl1")).one()
    assert (click.sub_id_1, click.keyword, click.cost) == ("zone9", "shoes", Decimal("0.3"))
    row = conversions(engine)[0]
    assert row["cost"] == Decimal("0.3")
    assert row["params"] == {"sub_id_1": "zone9", "keyword": "shoes", "extra_param_1": "x"}


def test_json_and_form_bodies(engine: Engine, world: World) -> None:
    """POST bodies in JSON or form encoding are read like query parameters."""
    post(
        engine,
        "subid=pl1",
        method="POST",
        body='{"status": "sale", "payout": 2.5}',
        content_type="application/json",
    )
    post(
        engine,
        "",
        method="POST",
        body="subid=pl2&status=lead&payout=1,2",
        content_type="application/x-www-form-urlencoded",
    )
    assert [(r["subid"], r["payout"]) for r in conversions(engine)] == [
        ("pl1", Decimal("2.5")),
        ("pl2", Decimal(3)),
    ]


def test_cookie_subid_is_used_by_the_pixel(engine: Engine, world: World) -> None:
    """The subid cookie recorded in the log stands in for a missing subid."""
    result = post(engine, "status=lead&payout=10", headers={service.COOKIE_HEADER: "pl2"})
    assert result.outcome == Outcome.ACCEPTED
    assert conversions(engine)[0]["subid"] == "pl2"


def test_reprocess_after_training_a_custom_type(engine: Engine, world: World) -> None:
    """An unknown status can be re-run from the log once a custom type exists."""
    first = post(engine, "subid=pl1&status=vip&payout=1", received_at=NOW - timedelta(hours=3))
    assert first.reason == "unknown status vip"
    with pytest.raises(NotFound):
        service.reprocess(engine, 9999, now=NOW)
    service.add_conversion_type(engine, "VIP", label="VIP customer", now=NOW)
    again = service.reprocess(engine, first.log_id, now=NOW)
    assert again.outcome == Outcome.ACCEPTED
    [row] = conversions(engine)
    assert (row["type"], row["converted_at"]) == ("vip", NOW - timedelta(hours=3))
    entries = log_rows(engine)
    assert entries[0]["reprocessed_by"] == entries[1]["id"] == again.log_id
    with pytest.raises(InvalidInput):
        service.reprocess(engine, first.log_id, now=NOW)


def test_reprocess_all_ignored_after_a_rate_is_set(engine: Engine, world: World) -> None:
    """Postbacks ignored for an unknown currency go through once the rate is set by hand."""
    post(engine, "subid=pl1&status=sale&payout=100&currency=XAA")
    post(engine, "subid=nosuch&status=sale")
    set_rate(engine, "XAA", "110", now=NOW)
    results = list(service.reprocess_ignored(engine, now=NOW))
    assert [r.outcome for _, r in results] == [Outcome.ACCEPTED, Outcome.IGNORED]
    assert conversions(engine)[0]["payout"] == Decimal(1)
    [(_, rerun)] = service.reprocess_ignored(engine, now=NOW)
    assert rerun.reason == "subid not found: nosuch"


def test_import_conversions_reports_each_line(engine: Engine, world: World) -> None:
    """Keitaro's `subid,payout,tid,status` lines go through the postback path, one per line."""
    lines = [
        "subid,payout,tid,status",
        "pl1,10,,sale",
        "# comment",
        "",
        "pl2,5,t9,lead",
        "nosuch,1,,sale",
        "pl1,oops,,sale",
    ]
    results = list(service.import_conversions(engine, lines, now=NOW))
    assert [(n, r.outcome, r.reason) for n, r in results] == [
        (2, Outcome.ACCEPTED, ""),
        (5, Outcome.ACCEPTED, ""),
        (6, Outcome.IGNORED, "subid not found: nosuch"),
        (7, Outcome.IGNORED, "payout is not a number: oops"),
    ]
    assert [(r["subid"], r["tid"], r["type"]) for r in conversions(engine)] == [
        ("pl1", "", "sale"),
        ("pl2", "t9", "lead"),
    ]
    assert {e["method"] for e in log_rows(engine)} == {"IMPORT"}


def test_conversion_types(engine: Engine) -> None:
    """Custom types are listed after the built-ins and cannot be created twice."""
    service.add_conversion_type(engine, "first_deposit", now=NOW)
    with pytest.raises(Conflict):
        service.add_conversion_type(engine, "FIRST_DEPOSIT", now=NOW)
    with pytest.raises(InvalidInput):
        service.add_conversion_type(engine, "sale", now=NOW)
    names = [row["name"] for row in service.list_conversion_types(engine)]
    assert names[-1] == "first_deposit" and names[:2] == ["lead", "sale"]


def test_failed_processing_is_logged_and_can_be_rerun(engine: Engine, world: World) -> None:
    """A request whose processing crashed is logged as ignored and re-runs like any other."""
    raw = RawPostback(received_at=NOW, method="GET", query="subid=pl1&status=sale")
    with engine.begin() as conn:
        log_id = service.log_failure(conn, raw, "KeyError: boom", now=NOW)
    [entry] = log_rows(engine)
    assert (entry["outcome"], entry["reason"]) == ("ignored", "internal error: KeyError: boom")
    assert service.reprocess(engine, log_id, now=NOW).outcome == Outcome.ACCEPTED


def test_network_ip_allowlist(engine: Engine, world: World) -> None:
    """A network with an allowlist ignores postbacks from other addresses; imports pass."""
    guarded = entities.create_affiliate_network(
        engine, name="Guarded net", now=NOW, postback_allowed_ips=["10.0.0.0/8"]
    )
    offer = entities.create_offer(
        engine, name="Guarded offer", url="https://o.test/", now=NOW, affiliate_network_id=guarded
    )
    add_clicks(engine, world, ["g1", "g2"], offer_id=offer)
    outsider = post(engine, "subid=g1&status=sale", remote_ip="203.0.113.9")
    insider = post(engine, "subid=g1&status=sale", remote_ip="10.1.2.3")
    assert (outsider.outcome, outsider.reason) == (
        Outcome.IGNORED,
        "sender not allowed: 203.0.113.9",
    )
    assert insider.outcome == Outcome.ACCEPTED
    [(_, imported)] = service.import_conversions(engine, ["g2,1,,sale"], now=NOW)
    assert imported.outcome == Outcome.ACCEPTED


def test_offer_newer_than_the_cached_rules(engine: Engine, world: World) -> None:
    """A click on an offer created after the rules were cached still gets its payout and upsell."""
    with engine.connect() as conn:
        stale_rules = service.load_rules(conn)
    offer = entities.create_offer(
        engine, name="Fresh", url="https://o.test/f", now=NOW, payout="4", upsell=True
    )
    add_clicks(engine, world, ["fresh"], offer_id=offer)
    raw = RawPostback(received_at=NOW, method="GET", query="subid=fresh&status=sale")
    with engine.begin() as conn:
        service.process_postback(conn, raw, stale_rules, now=NOW)
    assert conversions(engine)[0]["payout"] == Decimal(4)


def test_s2s_is_queued_on_change_and_not_on_duplicate(engine: Engine, world: World) -> None:
    """With a real S2S target: accepted and updated conversions queue a request, duplicates not."""
    source = entities.create_traffic_source(
        engine, name="Src", now=NOW, postback_url="https://ts.test/pb?cid={subid}&s={status}"
    )
    campaign = entities.create_campaign(
        engine, name="With S2S", alias="s2s", now=NOW, offers=[(world.plain_offer_id, 1)],
        traffic_source_id=source,
    )  # fmt: skip
    add_clicks(
        engine, replace(world, campaign_id=campaign), ["s2s1"], offer_id=world.plain_offer_id
    )
    for query in ["status=lead", "status=lead", "status=sale", "status=sale"]:
        post(engine, f"subid=s2s1&{query}")
    with engine.connect() as conn:
        urls = list(conn.execute(select(t.deliveries.c.url).order_by(t.deliveries.c.id)).scalars())
    assert urls == ["https://ts.test/pb?cid=s2s1&s=lead", "https://ts.test/pb?cid=s2s1&s=sale"]


def test_reprocess_ignored_acts_only_on_the_filtered_set(engine: Engine, world: World) -> None:
    """Re-processing ignored postbacks under filters (reason, subid, newest id) touches exactly the
    rows that match them and counts them first; the others stay ignored and untouched."""
    post(engine, "subid=pl1&status=sale&payout=1&currency=XAA")
    post(engine, "subid=pl2&status=sale&payout=2&currency=XAA")
    post(engine, "subid=nosuch&status=sale")
    post(engine, "subid=pl2&status=vip")
    set_rate(engine, "XAA", "110", now=NOW)
    chosen = service.IgnoredFilter(reason="currency", subid="pl2")
    assert service.count_ignored(engine, chosen) == (1, log_rows(engine)[1]["id"])
    results = list(service.reprocess_ignored(engine, chosen, now=NOW))
    assert [(log_id, r.outcome) for log_id, r in results] == [
        (log_rows(engine)[1]["id"], Outcome.ACCEPTED)
    ]
    assert [row["subid"] for row in conversions(engine)] == ["pl2"]
    newest = log_rows(engine)[-1]["id"]
    post(engine, "subid=pl1&status=sale&payout=3&currency=XBB")
    up_to = service.IgnoredFilter(reason="currency", up_to=newest)
    assert service.count_ignored(engine, up_to)[0] == 1
    assert len(list(service.reprocess_ignored(engine, up_to, now=NOW))) == 1
    assert service.count_ignored(engine, service.IgnoredFilter(outcome="accepted")) == (0, None)
    assert service.count_ignored(engine, service.IgnoredFilter())[0] == 3
