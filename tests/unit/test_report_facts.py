"""A click batch's facts (new_clicks_facts, the click writer's) are the sum of its clicks' own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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
    assert rf.new_clicks_facts(batch, marked, zone) == expected


def test_a_group_without_unique_clicks_carries_its_whole_cost_once() -> None:
    base = {"created_at": START, "campaign_id": 1, "is_unique": False}
    batch = [
        {**base, "cost": Decimal("0.25")},
        {**base, "cost": None},
        {**base, "cost": Decimal(1)},
    ]
    facts = rf.new_clicks_facts(batch, ())
    assert facts[("campaigns", (rf.hour_of(START), 1, 0, 0, "clicks"))] == [3, 0, Decimal("1.25")]
