"""What one click and its conversions add to the report cubes (docs/reports.md, "Aggregates").

A click and its conversions are one unit: every write that changes either adds the unit's facts
after the change minus its facts before, in the same transaction, so the cubes always equal what
the raw tables say. Facts: `clicks` at the click's hour (n clicks, u unique, m their cost per
`click_cost`), and per conversion `ct:<type>` at the click's hour and `vt:<type>` at the
conversion's hour (n conversions, m payout), all under the click's dimensions.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from clickloop.domain.costs import click_cost

# Cube name -> the dimensions it holds besides the campaign, the traffic source and the offer.
CUBES: dict[str, tuple[str, ...]] = {
    "campaigns": (),
    "countries": ("country",),
    "devices": ("device_type", "os", "browser"),
    "languages": ("language",),
}
BASE_DIMENSIONS = ("campaign_id", "traffic_source_id", "offer_id")
MARKED = "marked"
# Click fields a user may mark for aggregation in `report_marked`: the high-cardinality ones.
MARKABLE = (
    "keyword",
    "creative_id",
    "ad_campaign_id",
    "source",
    "referrer_domain",
    "external_id",
    *(f"sub_id_{n}" for n in range(1, 31)),
)
MAX_MARKED = 5
# The click fields the facts read (besides the marked ones).
CLICK_FIELDS = (
    "created_at",
    *BASE_DIMENSIONS,
    "cost",
    "is_unique",
    *sorted({name for dims in CUBES.values() for name in dims}),
)
CONVERSION_FIELDS = ("type", "payout", "cost", "converted_at")
# What makes new clicks alike (new_clicks_facts): the fields besides their time, cost and
# uniqueness.
_SIGNATURE_FIELDS = tuple(
    name for name in CLICK_FIELDS if name not in ("created_at", "cost", "is_unique")
)
_NO_COST = Decimal(0)

Key = tuple[str, tuple[Any, ...]]  # (cube, (hour, base..., dimensions..., fact))
Facts = dict[Key, list[Any]]  # -> [n, u, m]


def hour_of(moment: datetime) -> int:
    return int(moment.timestamp()) // 3600


def unit_facts(
    click: Mapping[str, Any],
    conversions: Iterable[Mapping[str, Any]],
    marked: Collection[str] = (),
    into: Facts | None = None,
    *,
    hours: range | None = None,
    weight: int = 1,
) -> Facts:
    """The unit's facts, added to `into` (a new dict by default); `hours` keeps only facts at
    those hours (a rebuild of part of the range); `weight`: as many identical units. A field
    missing from `click` is NULL."""
    facts: Facts = {} if into is None else into
    conversions = list(conversions)
    hour = hour_of(click["created_at"])
    cost = click_cost(click.get("cost"), (c["cost"] for c in conversions))
    rows: list[tuple[int, str, int, int, Decimal]] = [
        (hour, "clicks", weight, weight if click.get("is_unique") else 0, cost * weight)
    ]
    for conversion in conversions:
        kind, payout = conversion["type"], conversion["payout"]
        rows.append((hour, f"ct:{kind}", 1, 0, payout))
        rows.append((hour_of(conversion["converted_at"]), f"vt:{kind}", 1, 0, payout))
    if hours is not None:
        rows = [row for row in rows if row[0] in hours]
    base = tuple(click.get(name) or 0 for name in BASE_DIMENSIONS)
    groups = [(cube, tuple(_text(click.get(d)) for d in dims)) for cube, dims in CUBES.items()]
    groups += [(MARKED, (name, _text(click.get(name)))) for name in marked]
    for cube, values in groups:
        for at, fact, n, u, m in rows:
            key = (cube, (at, *base, *values, fact))
            found = facts.get(key)
            if found is None:
                facts[key] = [n, u, m]
            else:
                found[0] += n
                found[1] += u
                found[2] += m
    return facts


def new_clicks_facts(clicks: Iterable[Mapping[str, Any]], marked: Collection[str]) -> Facts:
    """The facts of new clicks (no conversions yet): clicks alike but for their cost and whether
    they are unique are counted together first, so a batch costs one small tuple per click, not
    a pass over every cube per click. A new click's facts are linear in both (n, u = n if unique,
    m = its cost), so a group's facts are those of at most three units: one click costing the
    group's total (unique if any is), the group's other unique clicks and its other clicks, both
    at no cost."""
    fields = (*_SIGNATURE_FIELDS, *marked)
    alike: dict[tuple[Any, ...], list[Any]] = {}  # -> [a click, clicks, unique ones, cost]
    for click in clicks:
        signature = (hour_of(click["created_at"]), *map(click.get, fields))
        cost = click.get("cost")
        unique = 1 if click.get("is_unique") else 0
        found = alike.get(signature)
        if found is None:
            alike[signature] = [click, 1, unique, Decimal(0) if cost is None else cost]
        else:
            found[1] += 1
            found[2] += unique
            if cost is not None:
                found[3] += cost
    facts: Facts = {}
    for click, count, unique, cost in alike.values():
        first_unique = unique > 0  # the unit that carries the cost
        units = (
            (first_unique, cost, 1),
            (True, _NO_COST, unique - 1 if first_unique else 0),
            (False, _NO_COST, count - unique - (0 if first_unique else 1)),
        )
        for is_unique, unit_cost, weight in units:
            if weight > 0:
                unit = {**click, "is_unique": is_unique, "cost": unit_cost}
                unit_facts(unit, (), marked, facts, weight=weight)
    return facts


def difference(after: Facts, before: Facts) -> Facts:
    """after - before, without the facts that did not change."""
    changed: Facts = {}
    for key in after.keys() | before.keys():
        a = after.get(key, (0, 0, Decimal(0)))
        b = before.get(key, (0, 0, Decimal(0)))
        delta = [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
        if delta[0] or delta[1] or delta[2]:
            changed[key] = delta
    return changed


def _text(value: Any) -> str:
    return "" if value is None else str(value)
