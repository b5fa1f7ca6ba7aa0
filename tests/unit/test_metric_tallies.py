"""Counts kept in the process (http/metrics.py, Tally and LatencyTally) reach the metrics a
scrape reads exactly as prometheus_client's own inc() and observe() would put them there."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram

from clickloop.http import metrics
from clickloop.http.metrics import _LATENCY_BUCKETS, LatencyTally, Tally, flush_tallies

# The bounds themselves, just past them, zero, past the last, and anything between.
AMOUNTS = st.one_of(
    st.sampled_from([0.0, *_LATENCY_BUCKETS, *(math.nextafter(b, 99) for b in _LATENCY_BUCKETS)]),
    st.floats(min_value=0, max_value=20),
)


def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (sample.name, sample.labels.get("le", "")): sample.value
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


@given(st.lists(AMOUNTS, max_size=40), st.sets(st.integers(min_value=0, max_value=39)))
def test_a_latency_tally_equals_observing_each(amounts: list[float], flush_at: set[int]) -> None:
    """Buckets and count exactly, the sum up to float rounding, however often it flushed."""
    tallied, observed = CollectorRegistry(), CollectorRegistry()
    tally = LatencyTally("latency_seconds", "latency", tallied)
    direct = Histogram("latency_seconds", "latency", buckets=_LATENCY_BUCKETS, registry=observed)
    try:
        for index, amount in enumerate(amounts):
            tally.observe(amount)
            direct.observe(amount)
            if index in flush_at:
                tally.flush()
        flush_tallies()
        found, expected = samples(tallied), samples(observed)
        total = ("latency_seconds_sum", "")
        assert math.isclose(found.pop(total), expected.pop(total), abs_tol=1e-9)
        assert found == expected
    finally:
        metrics._TALLIES.remove(tally)


def test_a_counter_tally_adds_on_flush() -> None:
    registry = CollectorRegistry()
    counter = Counter("events", "events", ["outcome"], registry=registry)
    tally = Tally(counter.labels("done"))
    try:
        for _ in range(5):
            tally.inc()
        assert registry.get_sample_value("events_total", {"outcome": "done"}) == 0
        flush_tallies()
        flush_tallies()  # nothing counted since: nothing added
        assert registry.get_sample_value("events_total", {"outcome": "done"}) == 5
    finally:
        metrics._TALLIES.remove(tally)
