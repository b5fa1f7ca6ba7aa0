"""The campaign work screen's services: the list's figures for a period (pending revenue is not
lost), sort, search and filters, clone, archive and restore, bulk status, tracking domains and
S2S health, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from clickloop.errors import Conflict, InvalidInput, NotFound
from clickloop.services import campaigns, entities
from clickloop.services.config import load_config
from clickloop.storage import report_cubes
from clickloop.storage import tables as t

NOW = datetime(2026, 5, 20, 12, tzinfo=UTC)
BASE = "http://127.0.0.1:8080"


def _click(subid: str, campaign: int, offer: int, source: int | None, cost: str) -> dict[str, Any]:
    return {
        "subid": subid,
        "created_at": NOW - timedelta(hours=1),
        "campaign_id": campaign,
        "offer_id": offer,
        "traffic_source_id": source,
        "cost": Decimal(cost),
        "is_unique": True,
    }


def _conversion(subid: str, click: dict[str, Any], kind: str, payout: str) -> dict[str, Any]:
    return {
        "subid": subid,
        "tid": "",
        "type": kind,
        "original_status": kind,
        "payout": Decimal(payout),
        "currency": "USD",
        "original_payout": Decimal(payout),
        "original_currency": "USD",
        "rate": "1",
        "campaign_id": click["campaign_id"],
        "offer_id": click["offer_id"],
        "traffic_source_id": click["traffic_source_id"],
        "params": {},
        "converted_at": NOW - timedelta(minutes=30),
        "created_at": NOW,
        "updated_at": NOW,
    }


@pytest.fixture
def seeded(engine: Engine) -> dict[str, int]:
    """Leads only (3 clicks at 0.50, two 10.00 leads), a sale (2 clicks at 1.00, a 5.00 sale),
    and a campaign without traffic; two sources, two networks."""
    net_a = entities.create_affiliate_network(engine, name="Net A", now=NOW)
    net_b = entities.create_affiliate_network(engine, name="Net B", now=NOW)
    offer_a = entities.create_offer(
        engine, name="Offer A", url="https://a.test/", affiliate_network_id=net_a, now=NOW
    )
    offer_b = entities.create_offer(
        engine, name="Offer B", url="https://b.test/", affiliate_network_id=net_b, now=NOW
    )
    push = entities.create_traffic_source(
        engine,
        name="Push",
        now=NOW,
        parameters=[{"name": "external_id", "param": "clickid", "macro": "{click_id}"}],
    )
    pops = entities.create_traffic_source(engine, name="Pops", now=NOW)
    leads = entities.create_campaign(
        engine,
        name="Leads only",
        alias="leads",
        traffic_source_id=push,
        offers=[(offer_a, 70), (offer_b, 30)],
        postbacks=[{"url": "https://crm.test/pb?s={status}", "statuses": ["sale"]}],
        now=NOW,
    )
    sales = entities.create_campaign(
        engine,
        name="Sales",
        alias="sales",
        traffic_source_id=pops,
        offers=[(offer_b, 100)],
        now=NOW,
    )
    quiet = entities.create_campaign(engine, name="Quiet", alias="quiet", now=NOW)
    clicks = [_click(f"l{i}", leads, offer_a, push, "0.50") for i in range(3)]
    clicks += [_click(f"s{i}", sales, offer_b, pops, "1.00") for i in range(2)]
    with engine.begin() as conn:
        conn.execute(insert(t.clicks), clicks)
        conn.execute(
            insert(t.conversions),
            [
                _conversion("l0", clicks[0], "lead", "10"),
                _conversion("l1", clicks[1], "lead", "10"),
                _conversion("s0", clicks[3], "sale", "5"),
            ],
        )
    report_cubes.rebuild(engine)
    return {
        "leads": leads,
        "sales": sales,
        "quiet": quiet,
        "push": push,
        "pops": pops,
        "net_a": net_a,
        "net_b": net_b,
        "offer_a": offer_a,
    }


def _board(engine: Engine, **options: Any) -> campaigns.Board:
    return campaigns.campaign_board(engine, default_base=BASE, now=NOW, **options)


def test_leads_count_as_pending_revenue_not_lost(engine: Engine, seeded: dict[str, int]) -> None:
    """A campaign with leads only shows its payouts as pending, confirmed revenue 0, and a
    profit and ROI that count them (the confirmed ROI, -100 %, stays beside them)."""
    board = _board(engine, period="today")
    rows = {row.name: row.figures for row in board.rows}
    leads = rows["Leads only"]
    assert (leads["clicks"], leads["leads"], leads["sales"]) == (3, 2, 0)
    assert leads["pending_revenue"] == Decimal(20) and leads["revenue"] == Decimal(0)
    assert leads["cost"] == Decimal("1.5")
    assert leads["projected_profit"] == Decimal("18.5")
    assert leads["projected_roi"] == Decimal("1233.33")
    assert leads["roi"] == Decimal("-100.00")
    assert rows["Sales"]["revenue"] == Decimal(5) and rows["Sales"]["projected_roi"] == Decimal(
        "150.00"
    )
    # A campaign without traffic is listed with zeros and empty ratios.
    assert rows["Quiet"]["clicks"] == 0 and rows["Quiet"]["projected_roi"] is None
    assert board.totals["clicks"] == 5 and board.totals["pending_revenue"] == Decimal(20)
    assert board.source.startswith("aggregates:")


def test_sort_search_and_filters(engine: Engine, seeded: dict[str, int]) -> None:
    """Sort by any column either way (empty ratios last), search by name or alias, filter by
    source, network (of the campaign's offers) and state; totals are those of the rows shown."""
    names = lambda board: [row.name for row in board.rows]  # noqa: E731
    assert names(_board(engine, period="today")) == ["Leads only", "Sales", "Quiet"]
    assert names(_board(engine, period="today", sort="projected_roi", descending=False)) == [
        "Sales",
        "Leads only",
        "Quiet",
    ]
    assert names(_board(engine, period="today", sort="name", descending=False)) == [
        "Leads only",
        "Quiet",
        "Sales",
    ]
    assert names(_board(engine, period="today", search="SAL")) == ["Sales"]
    assert names(_board(engine, period="today", search="quie")) == ["Quiet"]
    by_source = _board(engine, period="today", traffic_source_id=seeded["pops"])
    assert names(by_source) == ["Sales"] and by_source.totals["clicks"] == 2
    assert names(_board(engine, period="today", network_id=seeded["net_b"])) == [
        "Leads only",
        "Sales",
    ]
    campaigns.set_status(engine, [seeded["sales"]], "paused")
    assert names(_board(engine, period="today", state="paused")) == ["Sales"]
    # No traffic yesterday: every figure ties, names in order.
    assert names(_board(engine, period="yesterday")) == ["Leads only", "Quiet", "Sales"]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"period": "fortnight"}, "period"),
        ({"sort": "owner"}, "sort"),
        ({"state": "deleted"}, "state"),
        ({"period": "custom", "date_from": date(2026, 5, 1)}, "to"),
        ({"period": "today", "date_from": date(2026, 5, 1)}, "from"),
        ({"date_from": date(2026, 5, 2), "date_to": date(2026, 5, 1)}, "to"),
    ],
)
def test_bad_list_options_name_their_field(
    engine: Engine, options: dict[str, Any], field: str
) -> None:
    """An unknown period, sort column or state, or a custom range without its ends, is refused
    naming the parameter."""
    with pytest.raises(InvalidInput) as refused:
        _board(engine, **options)
    assert refused.value.field == field


def test_custom_period_and_default(engine: Engine, seeded: dict[str, int]) -> None:
    """Dates alone mean a custom period; none given is the shared default, the last 7 days in
    the settings' time zone."""
    board = _board(engine, date_from=date(2026, 5, 1), date_to=date(2026, 5, 19))
    assert board.period.name == "custom" and board.totals["clicks"] == 0
    entities.update_settings(engine, {"timezone": "Pacific/Kiritimati"})  # UTC+14: the 21st
    default = _board(engine)
    assert (default.period.name, default.period.date_to) == ("last_7_days", date(2026, 5, 21))
    assert default.period.date_from == date(2026, 5, 15)


def test_clone_copies_offers_weights_and_postbacks(engine: Engine, seeded: dict[str, int]) -> None:
    """A clone has the offers with their weights, the enabled S2S postbacks, the source and the
    cost model, under "<name> (copy)" and "<alias>-copy" (numbered when taken); its clicks are
    its own."""
    first = campaigns.clone(engine, seeded["leads"], now=NOW)
    second = campaigns.clone(engine, seeded["leads"], now=NOW)
    original = entities.get_entity(engine, "campaigns", seeded["leads"])
    copy = entities.get_entity(engine, "campaigns", first)
    assert (copy["name"], copy["alias"]) == ("Leads only (copy)", "leads-copy")
    again = entities.get_entity(engine, "campaigns", second)
    assert (again["name"], again["alias"]) == ("Leads only (copy) 2", "leads-copy-2")
    assert sorted(o.items() for o in copy["offers"]) == sorted(
        o.items() for o in original["offers"]
    )
    assert [p["url"] for p in copy["postbacks"]] == ["https://crm.test/pb?s={status}"]
    assert copy["postbacks"][0]["statuses"] == ["sale"]
    assert copy["postbacks"][0]["id"] != original["postbacks"][0]["id"]
    assert copy["traffic_source_id"] == original["traffic_source_id"]
    named = campaigns.clone(engine, seeded["leads"], now=NOW, name="Variant B", alias="vb")
    assert entities.get_entity(engine, "campaigns", named)["alias"] == "vb"
    rows = {row.name: row for row in _board(engine, period="today").rows}
    assert rows["Leads only (copy)"].figures["clicks"] == 0
    assert rows["Leads only (copy)"].link == f"{BASE}/leads-copy?clickid={{click_id}}"
    with pytest.raises(Conflict, match="already exists: vb"):
        campaigns.clone(engine, seeded["leads"], now=NOW, alias="vb")
    with pytest.raises(NotFound):
        campaigns.clone(engine, 9999, now=NOW)


def test_archive_hides_answers_404_keeps_data_and_restores_paused(
    engine: Engine, seeded: dict[str, int]
) -> None:
    """Archived: out of the list (but under state=archived, figures kept), the link is not
    active; it cannot be resumed until restored, and comes back paused."""
    assert load_config(engine).campaigns["leads"].active
    assert campaigns.archive(engine, [seeded["leads"]], now=NOW) == 1
    assert campaigns.archive(engine, [seeded["leads"]], now=NOW) == 0
    assert not load_config(engine).campaigns["leads"].active
    assert "Leads only" not in [row.name for row in _board(engine, period="today").rows]
    [archived] = _board(engine, period="today", state="archived").rows
    assert archived.archived and archived.figures["pending_revenue"] == Decimal(20)
    with pytest.raises(InvalidInput) as refused:
        campaigns.set_status(engine, [seeded["leads"], seeded["sales"]], "active")
    assert "restore it first" in refused.value.reason
    with pytest.raises(InvalidInput):
        entities.update_entity(engine, "campaigns", seeded["leads"], {"status": "active"}, now=NOW)
    with engine.connect() as conn:
        assert conn.execute(select(t.clicks.c.subid).where(t.clicks.c.subid == "l0")).first()
    assert campaigns.restore(engine, [seeded["leads"]]) == 1
    restored = entities.get_entity(engine, "campaigns", seeded["leads"])
    assert (restored["status"], restored["archived_at"]) == ("paused", None)
    assert campaigns.set_status(engine, [seeded["leads"]], "active") == 1
    assert load_config(engine).campaigns["leads"].active


def test_bulk_status_is_all_or_nothing(engine: Engine, seeded: dict[str, int]) -> None:
    """Several campaigns are paused at once; an unknown id changes none of them."""
    ids = [seeded["leads"], seeded["sales"]]
    with pytest.raises(NotFound):
        campaigns.set_status(engine, [*ids, 9999], "paused")
    assert load_config(engine).campaigns["sales"].active
    assert campaigns.set_status(engine, ids, "paused") == 2
    assert campaigns.set_status(engine, ids, "paused") == 0
    with pytest.raises(InvalidInput):
        campaigns.set_status(engine, [], "paused")
    with pytest.raises(InvalidInput):
        campaigns.set_status(engine, ids, "archived")


def test_tracking_domains(engine: Engine, seeded: dict[str, int]) -> None:
    """Links are built on the campaign's tracking domain, else the settings' first, else the
    server's URL; a domain must be a bare http(s) base URL from the settings, and one a
    campaign uses cannot be removed."""
    campaign = entities.get_entity(engine, "campaigns", seeded["leads"])
    assert campaigns.link_of(engine, campaign, default_base=BASE) == (
        f"{BASE}/leads?clickid={{click_id}}"
    )
    for bad in ("track.example.com", "https://t.example.com/path", "ftp://t.example.com"):
        with pytest.raises(InvalidInput) as refused:
            entities.update_settings(engine, {"tracking_domains": [bad]})
        assert refused.value.field == "tracking_domains"
    entities.update_settings(
        engine, {"tracking_domains": ["https://Go.Example.com/", "https://trk.other.net"]}
    )
    assert entities.get_settings(engine)["tracking_domains"] == [
        "https://go.example.com",
        "https://trk.other.net",
    ]
    assert campaigns.link_of(engine, campaign, default_base=BASE).startswith(
        "https://go.example.com/leads?"
    )
    with pytest.raises(InvalidInput) as unknown:
        entities.update_entity(
            engine,
            "campaigns",
            seeded["leads"],
            {"tracking_domain": "https://elsewhere.test"},
            now=NOW,
        )
    assert unknown.value.field == "tracking_domain"
    entities.update_entity(
        engine, "campaigns", seeded["leads"], {"tracking_domain": "https://trk.other.net/"}, now=NOW
    )
    campaign = entities.get_entity(engine, "campaigns", seeded["leads"])
    assert campaign["tracking_domain"] == "https://trk.other.net"
    rows = {row.name: row.link for row in _board(engine, period="today").rows}
    assert rows["Leads only"] == "https://trk.other.net/leads?clickid={click_id}"
    assert rows["Sales"] == "https://go.example.com/sales"
    with pytest.raises(InvalidInput) as in_use:
        entities.update_settings(engine, {"tracking_domains": ["https://go.example.com"]})
    assert "Leads only" in in_use.value.reason
    copy = campaigns.clone(engine, seeded["leads"], now=NOW)
    assert entities.get_entity(engine, "campaigns", copy)["tracking_domain"] == (
        "https://trk.other.net"
    )


def test_target_health(engine: Engine, seeded: dict[str, int]) -> None:
    """A campaign's S2S targets with their latest delivery and failures among the recent ones;
    a target nothing was sent to yet is idle."""
    [target] = campaigns.target_health(engine, seeded["leads"])
    assert (target.kind, target.health, target.last) == ("campaign_postback", "idle", None)
    with engine.begin() as conn:
        conversion_id = conn.execute(select(t.conversions.c.id).limit(1)).scalar_one()
        for state, attempts in (("delivered", 1), ("failed", 8)):
            conn.execute(
                insert(t.deliveries).values(
                    conversion_id=conversion_id,
                    target_kind="campaign_postback",
                    target_id=target.id,
                    method="GET",
                    url="https://crm.test/pb?s=sale",
                    host="crm.test:443",
                    dedup_key=f"k-{state}",
                    warnings=[],
                    state=state,
                    attempts=attempts,
                    next_attempt_at=NOW,
                    last_error="HTTP 500" if state == "failed" else None,
                    created_at=NOW,
                )
            )
    [target] = campaigns.target_health(engine, seeded["leads"])
    assert target.health == "failing" and target.failed == 1 and target.recent == 2
    assert target.last is not None and target.last["last_error"] == "HTTP 500"
    with pytest.raises(NotFound):
        campaigns.target_health(engine, 9999)
