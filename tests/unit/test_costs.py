"""The one definition of cost: what a click records, and what a click and its conversions cost."""

from __future__ import annotations

from decimal import Decimal

import pytest

from clickloop.domain.costs import click_cost, cost_at_click

D = Decimal


@pytest.mark.parametrize(
    ("model", "value", "param", "expected"),
    [
        ("none", D("0.50"), "0.20", None),
        ("cpc", D("0.50"), None, D("0.50")),
        ("cpc", D("0.50"), "0.20", D("0.50")),
        ("cpc_param", D("0.50"), "0.20", D("0.200000")),
        ("cpc_param", D("0.50"), "0,25", D("0.250000")),
        ("cpc_param", D("0.50"), None, None),
        ("cpc_param", D("0.50"), "free", None),
    ],
)
def test_cost_recorded_with_a_click(
    model: str, value: Decimal, param: str | None, expected: Decimal | None
) -> None:
    """No model records nothing, CPC the campaign's price, cpc_param the click's `cost`."""
    assert cost_at_click(model, value, param) == expected


@pytest.mark.parametrize(
    ("recorded", "conversion_costs", "expected"),
    [
        (None, [], D(0)),
        (D("0.30"), [], D("0.30")),
        (D("0.30"), [None, None], D("0.30")),
        (None, [D(2)], D(2)),
        # The seed's case: the postback's cost overwrote the click's; one cost, not their sum.
        (D(2), [D(2)], D(2)),
        (D("0.30"), [D(2)], D(2)),
        (D("0.30"), [D(2), None], D(2)),
        # Each conversion (tid, rebill) is its own action: their costs add up, once each.
        (D("0.30"), [D(2), D("1.5")], D("3.5")),
        (D("0.30"), [D(0)], D(0)),
    ],
)
def test_cost_of_a_click_and_its_conversions(
    recorded: Decimal | None, conversion_costs: list[Decimal | None], expected: Decimal
) -> None:
    """Conversion costs replace the click's recorded cost as soon as one carries a cost."""
    assert click_cost(recorded, conversion_costs) == expected
