"""What one click and its conversions add to the report cubes (docs/reports.md, "Aggregates").

A click and its conversions are one unit: every write that changes either adds the unit's facts
after the change minus its facts before, in the same transaction (new clicks on SQLite and moved
conversions: leaves them for the follower), so the cubes always equal what the raw tables say.
Facts: `clicks` at the click's hour (n clicks, u unique, m their cost per `click_cost`), and per
conversion `ct:<type>` at the click's hour and `vt:<type>` at the conversion's hour (n
conversions, m payout), all under the click's dimensions. The daily cubes
get the same facts at the local day (in the zone they are kept for) instead of the UTC hour
(the DAYPARTED ones at the local day and hour of day), and the marked fields' facts each span
of days holds (MARKED_SPANS).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from operator import itemgetter
from typing import Any

from clickloop.domain.costs import click_cost
from clickloop.domain.statuses import ConversionType

BASE_DIMENSIONS = ("campaign_id", "traffic_source_id", "offer_id")
# Hourly cube name -> (its entity columns, its other dimensions), by UTC hour. Most carry the
# campaign, source and offer, so those filters work on them; country by device type is kept
# without them (geo by device over all traffic: each hour's few rows, the daily cube's source),
# with OS, browser and language too (`audience_totals`: geo by OS, language by country) and by
# campaign alone (geo by device for one campaign); `totals` is all traffic by the hour.
CUBES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "totals": ((), ()),
    "campaigns": (BASE_DIMENSIONS, ()),
    "countries": (BASE_DIMENSIONS, ("country",)),
    "devices": (BASE_DIMENSIONS, ("device_type", "os", "browser")),
    "languages": (BASE_DIMENSIONS, ("language",)),
    "country_device_totals": ((), ("country", "device_type")),
    "audience_totals": ((), ("country", "device_type", "os", "browser", "language")),
    "campaign_country_devices": (("campaign_id",), ("country", "device_type")),
}
# Daily cube name -> (its entity columns, its other dimensions), by local day. The `_totals`
# ones drop the campaign, source and offer: a report by country alone reads days x countries;
# campaign > country reads days x campaigns x countries, not x sources x offers too.
DAILY_CUBES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "daily_campaigns": (BASE_DIMENSIONS, ()),
    "daily_countries": (BASE_DIMENSIONS, ("country",)),
    "daily_campaign_countries": (("campaign_id",), ("country",)),
    "daily_campaign_devices": (("campaign_id",), ("device_type",)),
    "daily_devices": (BASE_DIMENSIONS, ("device_type", "os", "browser")),
    "daily_languages": (BASE_DIMENSIONS, ("language",)),
    "daily_country_totals": ((), ("country",)),
    "daily_device_totals": ((), ("device_type", "os", "browser")),
    "daily_language_totals": ((), ("language",)),
    "daily_country_device_totals": ((), ("country", "device_type")),
    "daily_audience_totals": ((), ("country", "device_type", "os", "browser", "language")),
    "daily_campaign_country_devices": (("campaign_id",), ("country", "device_type")),
    "daypart_totals": ((), ()),
    "daypart_campaigns": (BASE_DIMENSIONS, ()),
    "daypart_countries": ((), ("country",)),
    "daypart_country_devices": ((), ("country", "device_type")),
    "daypart_devices": ((), ("device_type", "os", "browser")),
    "daypart_languages": ((), ("language",)),
}
MARKED = "marked"
# The marked fields again without campaign, source and offer, per span of local days: a span of
# SPAN_DAYS[k] days starts on a day divisible by it, so any range of days is a few spans per
# length (`spans`). A zone report over 30 days reads ~5 spans instead of 720 hours x entities.
MARKED_SPANS = "marked_spans"
SPAN_DAYS = (1, 2, 4, 8, 16)
# Daily cubes kept per span as well (a `days` column before the day): campaign > country over
# a month is ~3,000 groups of 264k daily rows at 10M clicks, which SQLite groups by sorting; a
# month of offer > country reads 95k span rows instead of 375k daily ones. The small `_totals`
# cubes and `daily_campaigns` (the campaign list, by day) stay by day.
SPANNED = frozenset(
    {
        "daily_countries",
        "daily_devices",
        "daily_languages",
        "daily_campaign_countries",
        "daily_campaign_devices",
        "daily_campaign_country_devices",
        "daily_audience_totals",
        "daypart_totals",
        "daypart_campaigns",
        "daypart_countries",
        "daypart_country_devices",
        "daypart_devices",
        "daypart_languages",
    }
)
# Daily cubes kept per local hour of day as well (an `hour_of_day` column before the fact: the
# hour of the fact's local time, in the zone of the daily cubes), all of them per span: a month
# of campaign by hour of day (dayparting) reads ~5 spans x 24 hours of rows, not 720 hours.
DAYPARTED = frozenset(name for name in SPANNED if name.startswith("daypart_"))
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
    *sorted({name for _, dims in CUBES.values() for name in dims}),
)
CONVERSION_FIELDS = ("type", "payout", "cost", "converted_at")
# What makes new clicks alike (new_clicks_facts): the fields besides their time, cost and
# uniqueness.
SIGNATURE_FIELDS = tuple(
    name for name in CLICK_FIELDS if name not in ("created_at", "cost", "is_unique")
)
_NO_COST = Decimal(0)
# What conversion_moves reads of a click: its time and the fields its facts are keyed by.
FACT_FIELDS = ("created_at", *SIGNATURE_FIELDS)
# When a fact happened, as the cubes keep it: the UTC hour, the local day and hour of day.
TIME_COLUMNS = ("hour", "day", "hour_of_day")
_TIMES, _DAY = len(TIME_COLUMNS), TIME_COLUMNS.index("day")
# A move (conversion_moves, click_moves): where and what conversions moved or new clicks added,
# before the cubes project it (a marked field's row names it in `dimension`; the others leave
# it and `value` NULL).
MOVE_COLUMNS = (*TIME_COLUMNS, *SIGNATURE_FIELDS, "dimension", "value", "fact", "n", "u", "m")
# The distinct dimension tuples of the cubes: each click's values for them are read once.
_DIMENSION_SETS = tuple(
    sorted({dims for cubes in (CUBES, DAILY_CUBES) for _, dims in cubes.values()})
)

# (cube, (hour, day or days and day, base..., dimensions..., hour of day if dayparted, fact))
Key = tuple[str, tuple[Any, ...]]
Facts = dict[Key, list[Any]]  # -> [n, u, m]

# A cube row holds a key's facts side by side (docs/reports.md, "Aggregates"): the clicks (n,
# u, m) and, per built-in conversion type and by click and by conversion time, the count and
# payout (`ct_sale_n`, `ct_sale_m`, `vt_sale_n`…), in the row of `kind` ''. A custom type's
# facts have a row of their own, `kind` its name, in `ct_n`, `ct_m`, `vt_n`, `vt_m`. A month
# of campaign by hour at 10M clicks is 73k such rows instead of 245k rows of one fact each.
BUILT_IN_TYPES = tuple(ConversionType)
ATTRIBUTIONS = ("ct", "vt")  # by click time, by conversion time
VALUES = (
    "n",
    "u",
    "m",
    *(f"{p}_{kind}_{x}" for kind in BUILT_IN_TYPES for p in ATTRIBUTIONS for x in "nm"),
    *(f"{p}_{x}" for p in ATTRIBUTIONS for x in "nm"),
)
COUNTS = tuple(name for name in VALUES if name[-1] in "nu")  # the others are money (m)


@functools.lru_cache(maxsize=256)
def slot(fact: str) -> tuple[str, int, int | None, int]:
    """Where a fact lands in the cubes' rows: the row's kind and the VALUES indexes of its
    count, its unique count (clicks only) and its money."""
    if fact == "clicks":
        return "", 0, 1, 2
    prefix, kind = fact.split(":", 1)
    if kind in BUILT_IN_TYPES:
        name = f"{prefix}_{kind}"
        return "", VALUES.index(f"{name}_n"), None, VALUES.index(f"{name}_m")
    return kind, VALUES.index(f"{prefix}_n"), None, VALUES.index(f"{prefix}_m")


def hour_of(moment: datetime) -> int:
    return int(moment.timestamp()) // 3600


def day_of(moment: datetime, zone: tzinfo) -> int:
    """The local day of `moment` in `zone`, as days since 1970-01-01 there: the `day` bucket of
    services/report_sql.py (epoch seconds plus the offset then, divided by 86400)."""
    return when(int(moment.timestamp()), zone)[1]


def when(epoch: int, zone: tzinfo) -> tuple[int, int, int]:
    """The TIME_COLUMNS of UTC `epoch` seconds: its UTC hour, local day and local hour of day."""
    local = epoch + offset_at(epoch, zone)
    return epoch // 3600, local // 86400, local % 86400 // 3600


def offset_at(epoch: int, zone: tzinfo) -> int:
    """The zone's UTC offset in seconds at `epoch`, from a cache of whole UTC hours: only an hour
    in which the offset changes is looked up per second."""
    first, last = _hour_offsets(epoch // 3600, zone)
    return first if first == last else _offset(epoch, zone)


@functools.lru_cache(maxsize=8192)
def _hour_offsets(hour: int, zone: tzinfo) -> tuple[int, int]:
    return _offset(hour * 3600, zone), _offset(hour * 3600 + 3599, zone)


def _offset(epoch: int, zone: tzinfo) -> int:
    delta = datetime.fromtimestamp(epoch, UTC).astimezone(zone).utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0


def unit_facts(
    click: Mapping[str, Any],
    conversions: Iterable[Mapping[str, Any]],
    marked: Collection[str] = (),
    into: Facts | None = None,
    *,
    zone: tzinfo = UTC,
    hours: range | None = None,
    days: range | None = None,
) -> Facts:
    """The unit's facts, added to `into` (a new dict by default), the daily ones by local day in
    `zone`. `hours` keeps only the hourly facts at those hours, `days` only the daily facts on
    those days (a rebuild of part of the range; either alone drops the other kind). A field
    missing from `click` is NULL."""
    facts: Facts = {} if into is None else into
    conversions = list(conversions)
    created = click["created_at"]
    cost = click_cost(click.get("cost"), (c["cost"] for c in conversions))
    rows: list[tuple[datetime, str, int, int, Decimal]] = [
        (created, "clicks", 1, 1 if click.get("is_unique") else 0, cost)
    ]
    for conversion in conversions:
        kind, payout = conversion["type"], conversion["payout"]
        rows.append((created, f"ct:{kind}", 1, 0, payout))
        rows.append((conversion["converted_at"], f"vt:{kind}", 1, 0, payout))
    base = tuple(click.get(name) or 0 for name in BASE_DIMENSIONS)
    texts = {dims: tuple(_text(click.get(name)) for name in dims) for dims in _DIMENSION_SETS}
    if hours is not None or days is None:
        hourly = [(hour_of(at), fact, n, u, m) for at, fact, n, u, m in rows]
        if hours is not None:
            hourly = [row for row in hourly if row[0] in hours]
        groups = _groups(CUBES, base, texts)
        groups += [(MARKED, (*base, name, _text(click.get(name)))) for name in marked]
        _add(facts, groups, hourly)
    if days is not None or hours is None:
        local = [
            (*when(int(at.timestamp()), zone)[1:], fact, n, u, m) for at, fact, n, u, m in rows
        ]
        if days is not None:
            local = [row for row in local if row[0] in days]
        groups = _groups(DAILY_CUBES, base, texts)
        spanned = [(cube, values) for cube, values in groups if cube in SPANNED]
        spanned += [(MARKED_SPANS, (name, _text(click.get(name)))) for name in marked]
        daily = [(day, fact, n, u, m) for day, _, fact, n, u, m in local]
        _add(facts, [group for group in groups if group[0] not in SPANNED], daily)
        for cube, values in spanned:
            for day, hour_of_day, fact, n, u, m in local:
                held = (*values, hour_of_day) if cube in DAYPARTED else values
                for key in _span_keys(cube, day, held, fact):
                    _add_to(facts, key, n, u, m)
    return facts


def _groups(
    cubes: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]],
    base: tuple[Any, ...],
    texts: Mapping[tuple[str, ...], tuple[str, ...]],
) -> list[tuple[str, tuple[Any, ...]]]:
    """Each cube with the unit's values of its entities and dimensions."""
    return [
        (cube, (*(base[BASE_DIMENSIONS.index(e)] for e in entities), *texts[dims]))
        for cube, (entities, dims) in cubes.items()
    ]


def spans(
    first: int, end: int, longest: int = SPAN_DAYS[-1], sealed: int | None = None
) -> list[tuple[int, int]]:
    """The spans (days, first day) that make up the days [first, end), none longer than
    `longest` days, none but one-day spans past `sealed` (the cubes keep the longer ones up to
    date only when they end by it: storage/cube_spans.py): the longest that fits at each
    step."""
    found = []
    last = end if sealed is None else min(end, sealed)
    while first < end:
        days = next(
            d
            for d in reversed(SPAN_DAYS)
            if d <= longest and first % d == 0 and (d == 1 or first + d <= last)
        )
        found.append((days, first))
        first += days
    return found


def _span_keys(cube: str, day: int, values: tuple[Any, ...], fact: str) -> list[Key]:
    """The keys of a fact on `day` in every span that holds the day."""
    return [(cube, (days, day - day % days, *values, fact)) for days in SPAN_DAYS]


def _add_to(facts: Facts, key: Key, n: int, u: int, m: Decimal) -> None:
    found = facts.get(key)
    if found is None:
        facts[key] = [n, u, m]
    else:
        found[0] += n
        found[1] += u
        found[2] += m


def _add(
    facts: Facts,
    groups: list[tuple[str, tuple[Any, ...]]],
    rows: list[tuple[int, str, int, int, Decimal]],
) -> None:
    for cube, values in groups:
        for at, fact, n, u, m in rows:
            _add_to(facts, (cube, (at, *values, fact)), n, u, m)


def click_moves(
    clicks: Iterable[Mapping[str, Any]], marked: Collection[str], zone: tzinfo = UTC
) -> list[tuple[Any, ...]]:
    """What new clicks (no conversions yet) add to the cubes, before the cubes project it: rows
    of MOVE_COLUMNS as conversion_moves gives them, summed by what their facts are keyed by
    (TIME_COLUMNS and the cubes' fields), so a batch of varied traffic costs a tuple per
    click, and alike clicks one row. A new click's `clicks` fact is linear: n clicks, u of them
    unique, m their recorded costs (click_cost without conversions). Summed into each cube they
    are the clicks' unit_facts."""
    fields = (*SIGNATURE_FIELDS, *marked)
    sums: dict[tuple[Any, ...], list[Any]] = {}
    for click in clicks:
        get = click.get
        signature = (*when(int(click["created_at"].timestamp()), zone), *map(get, fields), "clicks")
        found = sums.get(signature)
        if found is None:
            found = sums[signature] = [0, 0, _NO_COST]
        found[0] += 1
        if get("is_unique"):
            found[1] += 1
        cost = get("cost")
        if cost is not None:
            found[2] += cost
    return _move_rows(sums, tuple(marked))


def grouped_clicks_facts(
    groups: Iterable[Sequence[Any]], marked: Collection[str], zone: tzinfo = UTC
) -> Facts:
    """The facts of clicks summed by the database: rows of (UTC minute as "YYYY-MM-DD HH:MM",
    the SIGNATURE_FIELDS and the marked ones, clicks, unique clicks, cost in millionths), the
    clicks without conversions; what click_moves of those clicks add to the cubes."""
    sums: dict[tuple[Any, ...], list[Any]] = {}
    for minute, *values, n, u, micros in groups:
        epoch = int(datetime.fromisoformat(minute).replace(tzinfo=UTC).timestamp())
        signature = (*when(epoch, zone), *values, "clicks")
        found = sums.get(signature)
        if found is None:
            found = sums[signature] = [0, 0, _NO_COST]
        found[0] += n
        found[1] += u
        found[2] += Decimal(micros).scaleb(-6)
    return _projected(sums, tuple(marked))


# A conversion as its facts see it: (type, payout, converted_at).
Conversion = tuple[str, Decimal, datetime]


def conversion_moves(
    changes: Iterable[tuple[Mapping[str, Any], Conversion | None, Conversion | None]],
    marked: Collection[str],
    zone: tzinfo = UTC,
) -> list[tuple[Any, ...]]:
    """What conversions that changed (click, before or None, after or None) move in the cubes,
    when nothing else of their units changed (no cost carried by either state: click_cost stays;
    the click's fields as they were), before the cubes project it: rows of MOVE_COLUMNS (m in
    millionths) summed by signature, one with the cubes' dimensions and one per marked field with
    its name and value. Summed into each cube (storage/report_cubes.py, fold_moves) they are
    difference(unit_facts after, unit_facts before) for such a change, but only the
    conversion's own `ct:`/`vt:` facts are worked out. `click` needs `created_at` and the
    FACT_FIELDS (with the marked ones)."""
    marked = tuple(marked)
    return _move_rows(_conversion_sums(changes, marked, zone), marked)


def _move_rows(
    sums: Mapping[tuple[Any, ...], list[Any]], marked: tuple[str, ...]
) -> list[tuple[Any, ...]]:
    """Sums keyed by signature as rows of MOVE_COLUMNS (m in millionths): one with the cubes'
    dimensions and one per marked field with its name and value; none for a sum of nothing."""
    keyed = _keyed(marked)
    dimensions = _TIMES + len(SIGNATURE_FIELDS)  # `normal`'s time, then the fields
    rows = []
    for signature, (n, u, m) in sums.items():
        if not (n or u or m):
            continue
        normal = keyed.normal(signature)
        head, fact, micros = normal[:dimensions], normal[-1], int(m.scaleb(6))
        rows.append((*head, None, None, fact, n, u, micros))
        rows += [
            (*head, name, value, fact, n, u, micros)
            for name, value in zip(marked, normal[dimensions:], strict=False)
        ]
    return rows


def _conversion_sums(
    changes: Iterable[tuple[Mapping[str, Any], Conversion | None, Conversion | None]],
    marked: Collection[str],
    zone: tzinfo,
) -> dict[tuple[Any, ...], list[Any]]:
    """The changes' ct:/vt: moves summed by signature (TIME_COLUMNS, fields, fact)."""
    fields = (*SIGNATURE_FIELDS, *marked)
    sums: dict[tuple[Any, ...], list[Any]] = {}
    moves: list[tuple[int, str, int, Decimal]] = []
    for click, before, after in changes:
        if before == after:
            continue
        moves.clear()
        clicked = int(click["created_at"].timestamp())
        if before is not None:
            moves += _moves(clicked, before, -1)
        if after is not None:
            moves += _moves(clicked, after, 1)
        values = tuple(map(click.get, fields))
        for epoch, fact, n, m in moves:
            signature = (*when(epoch, zone), *values, fact)
            found = sums.get(signature)
            if found is None:
                sums[signature] = [n, 0, m]
            else:
                found[0] += n
                found[2] += m
    return sums


def _moves(clicked: int, conversion: Conversion, sign: int) -> list[tuple[int, str, int, Decimal]]:
    kind, payout, converted_at = conversion
    payout = payout if sign > 0 else -payout
    ct, vt = _fact_names(kind)
    return [(clicked, ct, sign, payout), (int(converted_at.timestamp()), vt, sign, payout)]


@functools.lru_cache(maxsize=256)
def _fact_names(kind: str) -> tuple[str, str]:
    return f"ct:{kind}", f"vt:{kind}"


def _projected(sums: Mapping[tuple[Any, ...], list[Any]], marked: tuple[str, ...]) -> Facts:
    """Sums keyed by signature (TIME_COLUMNS, the cubes' fields, the fact) projected on every
    cube, without the ones that came to nothing."""
    keyed = _keyed(marked)
    facts: Facts = {}
    for signature, (n, u, m) in sums.items():
        if not (n or u or m):
            continue
        normal = keyed.normal(signature)
        for cube, project in keyed.cubes:
            _add_to(facts, (cube, project(normal)), n, u, m)
        for cube, project in keyed.spanned:
            for key in _span_keys(cube, normal[_DAY], project(normal), normal[-1]):
                _add_to(facts, key, n, u, m)
    return facts


@dataclass(frozen=True, slots=True)
class _Keyed:
    """How a signature becomes each cube's key: `normal` makes it (TIME_COLUMNS, base ids or 0,
    texts or "", the marked names, the fact), and each cube's itemgetter picks its key from
    that, in unit_facts' order (a SPANNED cube's or a marked field's spans: its dimensions and
    a DAYPARTED one's hour of day, spanned from the day)."""

    bases: tuple[int, ...]
    texts: tuple[int, ...]
    names: tuple[str, ...]
    cubes: tuple[tuple[str, Callable[[tuple[Any, ...]], tuple[Any, ...]]], ...]
    spanned: tuple[tuple[str, Callable[[tuple[Any, ...]], tuple[Any, ...]]], ...]

    def normal(self, signature: tuple[Any, ...]) -> tuple[Any, ...]:
        return (
            *signature[:_TIMES],
            *[signature[i] or 0 for i in self.bases],
            *[_text(signature[i]) for i in self.texts],
            *self.names,
            signature[-1],
        )


@functools.cache
def _keyed(marked: tuple[str, ...]) -> _Keyed:
    fields = (*SIGNATURE_FIELDS, *marked)
    bases = tuple(_TIMES + fields.index(name) for name in BASE_DIMENSIONS)
    texts = tuple(_TIMES + i for i, name in enumerate(fields) if name not in BASE_DIMENSIONS)
    at = {
        name: _TIMES + len(bases) + i
        for i, name in enumerate(n for n in fields if n not in BASE_DIMENSIONS)
    }
    base = tuple(range(_TIMES, _TIMES + len(bases)))
    name_at = {name: _TIMES + len(bases) + len(texts) + i for i, name in enumerate(marked)}
    fact = _TIMES + len(bases) + len(texts) + len(marked)
    hour, day, hour_of_day = range(_TIMES)

    def held(entities: tuple[str, ...], dims: tuple[str, ...]) -> tuple[int, ...]:
        """Where a cube's entity ids and dimensions are in `normal`."""
        return (*(base[BASE_DIMENSIONS.index(e)] for e in entities), *(at[d] for d in dims))

    picks = [(cube, (hour, *held(*columns), fact)) for cube, columns in CUBES.items()]
    picks += [(MARKED, (hour, *base, name_at[n], at[n], fact)) for n in marked]
    daily = [
        (cube, (*held(*columns), *([hour_of_day] if cube in DAYPARTED else [])))
        for cube, columns in DAILY_CUBES.items()
    ]
    picks += [(cube, (day, *indices, fact)) for cube, indices in daily if cube not in SPANNED]
    cubes = tuple((cube, itemgetter(*indices)) for cube, indices in picks)
    # A tuple whatever the count: itemgetter of one index gives the value itself.
    spans = [(cube, indices) for cube, indices in daily if cube in SPANNED]
    spans += [(MARKED_SPANS, (name_at[n], at[n])) for n in marked]
    spanned = tuple(
        (cube, lambda normal, at=indices: tuple(normal[i] for i in at)) for cube, indices in spans
    )
    return _Keyed(bases, texts, tuple(marked), cubes, spanned)


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
