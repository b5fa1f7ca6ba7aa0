"""A click batch's moves (click_moves, the click writer's on PostgreSQL) and clicks summed by
minute (grouped_clicks_facts, SQLite's fold) are the sum of the clicks' own facts, and a
postback batch's conversion moves (conversion_moves), summed into the cubes, are what the
units' facts moved."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from clickloop.domain import report_facts as rf

# Two hours around the start of summer time in New York (2026-03-08 07:00 UTC).
START = datetime(2026, 3, 8, 5, 59, tzinfo=UTC)
ZONES = [UTC, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata")]

clicks = st.fixed_dictionaries(
    {
        "created_at": st.integers(0, 7200).map(lambda s: START + timedelta(seconds=s)),
        "campaign_id": st.sampled_from([1, 2]),
        "traffic_source_id": st.sampled_from([None, 3]),
        "offer_id": st.sampled_from([None, 4]),
        "cost": st.one_of(
            st.none(), st.decimals(min_value=0, max_value=5, places=6, allow_nan=False)
        ),
        "is_unique": st.sampled_from([None, False, True]),
        "country": st.sampled_from([None, "US", "DE"]),
        "device_type": st.sampled_from([None, "mobile"]),
        "os": st.sampled_from(["Android", "iOS"]),
        "browser": st.sampled_from([None, "Chrome"]),
        "language": st.sampled_from([None, "en"]),
        "sub_id_1": st.sampled_from([None, "zone-1", "zone-2"]),
        "keyword": st.sampled_from([None, "vpn", 7]),
    }
)


@settings(max_examples=200, deadline=None)
@given(
    batch=st.lists(clicks, max_size=40),
    marked=st.sampled_from([(), ("sub_id_1",), ("sub_id_1", "keyword")]),
    zone=st.sampled_from(ZONES),
)
def test_a_batch_counts_what_its_clicks_count_one_by_one(
    batch: list[dict[str, Any]], marked: tuple[str, ...], zone: Any
) -> None:
    """Alike clicks are folded together whatever their costs and uniqueness: the facts stay
    exact (same counts, same Decimal cost)."""
    expected: rf.Facts = {}
    for click in batch:
        rf.unit_facts(click, (), marked, expected, zone=zone)
    assert folded(rf.click_moves(batch, marked, zone)) == expected


@settings(max_examples=200, deadline=None)
@given(
    batch=st.lists(clicks, max_size=40),
    marked=st.sampled_from([(), ("sub_id_1",), ("sub_id_1", "keyword")]),
    zone=st.sampled_from(ZONES),
)
def test_clicks_summed_by_minute_count_what_the_clicks_count(
    batch: list[dict[str, Any]], marked: tuple[str, ...], zone: Any
) -> None:
    """SQLite's fold (report_cubes.catch_up) sums the clicks by UTC minute and signature in
    SQL: its rows, summed here the same way, give the clicks' own facts."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for click in batch:
        minute = click["created_at"].strftime("%Y-%m-%d %H:%M")
        key = (minute, *(click.get(name) for name in (*rf.SIGNATURE_FIELDS, *marked)))
        sums = groups.setdefault(key, [0, 0, 0])
        sums[0] += 1
        sums[1] += 1 if click["is_unique"] else 0
        sums[2] += int((click["cost"] or 0) * 1_000_000)
    rows = [(*key, *sums) for key, sums in groups.items()]
    assert rf.grouped_clicks_facts(rows, marked, zone) == folded(
        rf.click_moves(batch, marked, zone)
    )


def test_a_group_without_unique_clicks_carries_its_whole_cost_once() -> None:
    base = {"created_at": START, "campaign_id": 1, "is_unique": False}
    batch = [
        {**base, "cost": Decimal("0.25")},
        {**base, "cost": None},
        {**base, "cost": Decimal(1)},
    ]
    facts = folded(rf.click_moves(batch, ()))
    assert facts[("campaigns", (rf.hour_of(START), 1, 0, 0, "clicks"))] == [3, 0, Decimal("1.25")]


conversions = st.tuples(
    st.sampled_from(["lead", "sale", "rejected"]),
    st.decimals(min_value=-5, max_value=50, places=6, allow_nan=False),
    st.integers(-3600, 3 * 86400).map(lambda s: START + timedelta(seconds=s)),
)


@settings(max_examples=200, deadline=None)
@given(
    click=clicks,
    kept=st.lists(conversions, max_size=3),
    moves=st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 9)), conversions), max_size=6),
    marked=st.sampled_from([(), ("sub_id_1",), ("sub_id_1", "keyword")]),
    zone=st.sampled_from(ZONES),
)
def test_conversion_moves_are_what_the_unit_facts_moved(
    click: dict[str, Any],
    kept: list[rf.Conversion],
    moves: list[tuple[int | None, rf.Conversion]],
    marked: tuple[str, ...],
    zone: Any,
) -> None:
    """A unit's conversions change one after another (a new one, or one replaced): the moves
    alone, summed into the cubes as the follower's fold does, equal the unit's facts after minus
    before, the click's and the other conversions' unchanged (no costs carried, as the postback
    batch path uses it)."""
    current = list(kept)
    changes: list[tuple[dict[str, Any], rf.Conversion | None, rf.Conversion | None]] = []
    for index, conversion in moves:
        if index is None or index >= len(current):
            current.append(conversion)
            changes.append((click, None, conversion))
        else:
            changes.append((click, current[index], conversion))
            current[index] = conversion

    def facts(units: list[rf.Conversion]) -> rf.Facts:
        rows = [{"type": k, "payout": p, "converted_at": at, "cost": None} for k, p, at in units]
        return rf.unit_facts(click, rows, marked, zone=zone)

    expected = rf.difference(facts(current), facts(kept))
    assert folded(rf.conversion_moves(changes, marked, zone)) == expected


def folded(moves: list[tuple[Any, ...]]) -> rf.Facts:
    """The moves summed into each cube as storage/report_cubes.py's fold statements sum them: a
    row without a marked field into every cube (into a spanned one once per span length), a
    marked field's row into the marked cubes; keys that come to nothing left out."""
    facts: rf.Facts = {}

    def add(cube: str, key: tuple[Any, ...], n: int, u: int, m: Decimal) -> None:
        found = facts.setdefault((cube, key), [0, 0, Decimal(0)])
        found[0] += n
        found[1] += u
        found[2] += m

    for row in moves:
        move = dict(zip(rf.MOVE_COLUMNS, row, strict=True))
        hour, day, fact, n, u = (move[c] for c in ("hour", "day", "fact", "n", "u"))
        m = Decimal(move["m"]).scaleb(-6)
        spans = [(days, day - day % days) for days in rf.SPAN_DAYS]
        if move["dimension"] is None:
            for cube, (entities, dims) in rf.CUBES.items():
                add(cube, (hour, *(move[c] for c in (*entities, *dims)), fact), n, u, m)
            for cube, (entities, dims) in rf.DAILY_CUBES.items():
                held = (*entities, *dims, *(["hour_of_day"] if cube in rf.DAYPARTED else []))
                values = tuple(move[c] for c in held)
                for span in spans if cube in rf.SPANNED else [(day,)]:
                    add(cube, (*span, *values, fact), n, u, m)
            continue
        base = tuple(move[c] for c in rf.BASE_DIMENSIONS)
        add(rf.MARKED, (hour, *base, move["dimension"], move["value"], fact), n, u, m)
        for span in spans:
            add(rf.MARKED_SPANS, (*span, move["dimension"], move["value"], fact), n, u, m)
    return {key: sums for key, sums in facts.items() if any(sums)}


@given(click=clicks, converted=st.integers(0, 7200), zone=st.sampled_from(ZONES))
def test_a_daypart_holds_each_fact_at_its_local_day_and_hour(
    click: dict[str, Any], converted: int, zone: Any
) -> None:
    """The dayparted cubes keep a fact at the local day and hour of day of its moment (the
    click's for clicks and conversions by click time, the conversion's by conversion time), in
    every span that holds the day; across the change to summer time."""
    at = START + timedelta(seconds=converted)
    sale = {"type": "sale", "payout": Decimal(2), "cost": None, "converted_at": at}
    facts = rf.unit_facts(click, [sale], zone=zone)

    def local(moment: datetime) -> tuple[int, int]:
        there = moment.astimezone(zone)
        return (there.date() - date(1970, 1, 1)).days, there.hour

    expected = {"clicks": local(click["created_at"]), "ct:sale": local(click["created_at"])}
    expected["vt:sale"] = local(at)
    held = {key for cube, key in facts if cube == "daypart_totals"}
    assert held == {
        (days, day - day % days, hour, fact)
        for fact, (day, hour) in expected.items()
        for days in rf.SPAN_DAYS
    }


@given(
    first=st.integers(20_000, 20_100),
    days=st.integers(1, 120),
    longest=st.sampled_from(rf.SPAN_DAYS),
    sealed=st.one_of(st.none(), st.integers(19_990, 20_230)),
)
def test_spans_cover_a_range_of_days_once(
    first: int, days: int, longest: int, sealed: int | None
) -> None:
    """A range of days is spans that follow each other from its first day to its last, each
    starting on a multiple of its length, none longer than asked and none but one-day spans
    ending after the seal mark: at most two of each length besides the longest, up to the
    mark."""
    found = rf.spans(first, first + days, longest, sealed)
    at = first
    for length, start in found:
        assert start == at and start % length == 0
        assert length in rf.SPAN_DAYS and length <= longest
        assert length == 1 or sealed is None or start + length <= sealed
        at += length
    assert at == first + days
    lengths = [length for length, start in found if sealed is None or start + length <= sealed]
    assert all(lengths.count(n) <= 2 for n in rf.SPAN_DAYS if n < longest)
