"""What a postback does to an existing conversion identity."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from clickloop.domain.conversions import (
    ConversionState,
    Create,
    Decision,
    Duplicate,
    Incoming,
    Stale,
    Update,
    decide_conversion,
    is_sale,
)
from clickloop.domain.money import Converted

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
EARLIER = datetime(2026, 1, 1, tzinfo=UTC)


def usd(amount: str) -> Converted:
    value = Decimal(amount)
    return Converted(
        amount=value,
        currency="USD",
        original_amount=value,
        original_currency="USD",
        rate=Decimal(1),
    )


def eur(amount: str, rate: str = "1.08") -> Converted:
    value = Decimal(amount)
    return Converted(
        amount=(value * Decimal(rate)).quantize(Decimal("0.000001")),
        currency="USD",
        original_amount=value,
        original_currency="EUR",
        rate=Decimal(rate),
    )


DEFAULT = usd("5")
STORED = ConversionState(
    type="lead",
    original_status="hold",
    payout=Decimal(10),
    currency="USD",
    original_payout=Decimal(10),
    original_currency="USD",
    rate=Decimal(1),
    cost=Decimal("0.5"),
    converted_at=EARLIER,
    params={"sub_id_1": "a"},
)


def incoming(type: str = "lead", status: str = "hold", **kwargs: Any) -> Incoming:
    values: dict[str, Any] = {"payout": None, "cost": None, "date": None, "params": {}}
    values.update(kwargs)
    return Incoming(type=type, original_status=status, **values)


def decide(new: Incoming, existing: ConversionState | None = STORED, **kwargs: bool) -> Decision:
    return decide_conversion(new, existing=existing, default_payout=DEFAULT, now=NOW, **kwargs)


def test_new_identity_is_created_with_now_and_default_payout() -> None:
    """A first postback without payout or date takes the offer's payout and the current time."""
    decision = decide(incoming("sale", "approved"), existing=None)
    assert decision == Create(
        state=ConversionState(
            type="sale",
            original_status="approved",
            payout=Decimal(5),
            currency="USD",
            original_payout=Decimal(5),
            original_currency="USD",
            rate=Decimal(1),
            cost=None,
            converted_at=NOW,
            params={},
        )
    )


def test_new_identity_keeps_sent_values() -> None:
    """Sent payout (converted), cost, date and params are stored on a new conversion."""
    decision = decide(
        incoming("lead", payout=eur("10"), cost=Decimal(2), date=EARLIER, params={"k": "v"}),
        existing=None,
    )
    assert isinstance(decision, Create)
    state = decision.state
    assert (state.payout, state.original_payout, state.original_currency, state.rate) == (
        Decimal("10.8"),
        Decimal(10),
        "EUR",
        Decimal("1.08"),
    )
    assert (state.cost, state.converted_at, state.params) == (Decimal(2), EARLIER, {"k": "v"})


@pytest.mark.parametrize(
    ("has_sale", "upsell", "expected_type"),
    [(True, True, "rebill"), (True, False, "sale"), (False, True, "sale"), (False, False, "sale")],
)
def test_sale_with_new_tid_becomes_rebill_only_with_upsell(
    has_sale: bool, upsell: bool, expected_type: str
) -> None:
    """A second sale on a click is a rebill when the offer allows upsells, else a sale."""
    decision = decide(
        incoming("sale"), existing=None, click_has_sale=has_sale, upsell_allowed=upsell
    )
    assert isinstance(decision, Create)
    assert decision.state.type == expected_type


@pytest.mark.parametrize(
    ("stored_type", "new_type", "expected"),
    [
        ("lead", "lead", Duplicate),
        ("lead", "sale", Update),
        ("lead", "rejected", Update),
        ("sale", "rejected", Update),
        ("rejected", "sale", Update),
        ("sale", "lead", Stale),
        ("rejected", "lead", Stale),
        ("rebill", "lead", Stale),
        ("sale", "trash", Update),
        ("registration", "lead", Update),
        ("deposit", "lead", Update),
        ("rebill", "rejected", Update),
    ],
)
def test_transitions(stored_type: str, new_type: str, expected: type) -> None:
    """A lead never demotes a settled conversion; other transitions update it."""
    existing = replace(STORED, type=stored_type)
    decision = decide(incoming(new_type, status="hold"), existing=existing)
    assert isinstance(decision, expected)


def test_stale_reason_names_both_types() -> None:
    """The stale reason says what arrived late and what it would have overwritten."""
    assert decide(incoming("lead"), replace(STORED, type="sale")) == Stale(
        reason="stale status: lead after sale"
    )


def test_sale_on_a_stored_rebill_stays_rebill() -> None:
    """Re-sending an upsell's sale postback does not turn the rebill into a first sale."""
    existing = replace(STORED, type="rebill", original_status="sale")
    assert decide(incoming("sale", "sale"), existing) == Duplicate(state=existing)


@pytest.mark.parametrize(
    ("change", "field", "value"),
    [
        ({"status": "Hold"}, "original_status", "Hold"),
        ({"payout": usd("11")}, "payout", Decimal(11)),
        ({"payout": usd("-10")}, "payout", Decimal(-10)),
        ({"payout": eur("10")}, "original_currency", "EUR"),
        ({"cost": Decimal(1)}, "cost", Decimal(1)),
        ({"date": NOW}, "converted_at", NOW),
        ({"params": {"sub_id_1": "b"}}, "params", {"sub_id_1": "b"}),
        ({"params": {"sub_id_2": "c"}}, "params", {"sub_id_1": "a", "sub_id_2": "c"}),
    ],
)
def test_any_changed_field_is_an_update(change: dict[str, Any], field: str, value: object) -> None:
    """Changing any stored field updates the conversion and reports the previous state."""
    decision = decide(incoming(**change))
    assert isinstance(decision, Update)
    assert getattr(decision.state, field) == value
    assert decision.previous == STORED


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"payout": usd("10")},
        {"payout": usd("10.000000")},
        {"cost": Decimal("0.50")},
        {"date": EARLIER},
        {"params": {"sub_id_1": "a"}},
    ],
)
def test_nothing_new_is_a_duplicate(change: dict[str, Any]) -> None:
    """Values equal to (or omitted from) the stored conversion make a duplicate."""
    assert decide(incoming(**change)) == Duplicate(state=STORED)


def test_same_original_payout_is_a_duplicate_even_if_the_rate_moved() -> None:
    """A re-sent EUR postback is a duplicate although today's rate differs."""
    existing = decide(incoming(payout=eur("10", "1.08")), existing=None)
    assert isinstance(existing, Create)
    again = decide(incoming(payout=eur("10", "1.10")), existing=existing.state)
    assert again == Duplicate(state=existing.state)


def test_update_without_payout_keeps_the_stored_payout() -> None:
    """A status change without payout (`status=rejected`) keeps amount, currency and rate."""
    decision = decide(incoming("rejected", "rejected"))
    assert isinstance(decision, Update)
    assert (decision.state.payout, decision.state.rate, decision.state.cost) == (
        Decimal(10),
        Decimal(1),
        Decimal("0.5"),
    )
    assert decision.state.converted_at == EARLIER


@pytest.mark.parametrize(
    ("type_name", "expected"),
    [("sale", True), ("rebill", True), ("lead", False), ("rejected", False), ("vip", False)],
)
def test_is_sale(type_name: str, expected: bool) -> None:
    """Sales and rebills count as "the click already has a sale"."""
    assert is_sale(type_name) is expected
