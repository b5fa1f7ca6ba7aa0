"""What traffic cost: the cost recorded with a click, and the one cost of a click with its
conversions. Reports, the dashboard, the campaign list and CSV all count cost by `click_cost`.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from clickloop.domain.clicks import parse_cost

COST_MODELS = ("none", "cpc", "cpc_param")


def cost_at_click(model: str, value: Decimal, param: str | None) -> Decimal | None:
    """The cost stored with a new click: the campaign's fixed CPC `value` (`cpc`), the click's
    `cost` parameter (`cpc_param`; unreadable gives none), or none (`none`)."""
    if model == "cpc":
        return value
    if model == "cpc_param":
        return parse_cost(param)
    return None


def click_cost(recorded: Decimal | None, conversion_costs: Iterable[Decimal | None]) -> Decimal:
    """The one cost of a click and its conversions.

    A postback's `cost` (CPA / RevShare) replaces the cost recorded with the click, so as soon as
    one conversion carries a cost the click costs the sum of its conversions' costs (each tid or
    rebill is an action of its own; a re-sent postback replaces its conversion's cost); otherwise
    it costs what was recorded with it, or nothing.
    """
    carried = [cost for cost in conversion_costs if cost is not None]
    if carried:
        return sum(carried, Decimal(0))
    return recorded if recorded is not None else Decimal(0)
