"""Click rules: ids, untrusted query parsing, parameter mapping, offer choice."""

from __future__ import annotations

import random
import re
from collections import Counter
from decimal import Decimal
from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickloop.domain.clicks import (
    MAX_NAME_CHARS,
    MAX_PARAMS,
    MAX_VALUE_CHARS,
    ParameterRow,
    WeightedOffer,
    choose_offer,
    fields_by_param,
    first_header_address,
    join_offer_params,
    map_params,
    new_subid,
    parse_cost,
    parse_query,
)


def test_subid_is_short_url_safe_and_time_ordered() -> None:
    """Later milliseconds sort after earlier ones whatever the random bits."""
    rng = random.Random(1)
    ids = [new_subid(1_700_000_000_000 + n, rng.getrandbits(64)) for n in range(0, 5000, 7)]
    assert ids == sorted(ids)
    assert all(len(i) <= 24 and re.fullmatch(r"[0-9a-z]+", i) for i in ids)


def test_subids_in_one_millisecond_differ() -> None:
    """The random part keeps ids unique within a millisecond."""
    rng = random.Random(2)
    ids = {new_subid(1_700_000_000_000, rng.getrandbits(64)) for _ in range(10000)}
    assert len(ids) == 10000


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"a=1&b=2", [("a", "1"), ("b", "2")]),
        (b"a=%ZZ&b", [("a", "%ZZ"), ("b", "")]),
        (b"k=%ff%fe", [("k", "\ufffd\ufffd")]),
        (b"=x&&a=+", [("a", " ")]),
        (b"n%00ul=a%00b", [("nul", "ab")]),
        (b"x" * 100 + b"=1", []),
    ],
)
def test_parse_query_never_raises(query: bytes, expected: list[tuple[str, str]]) -> None:
    """Broken escapes, invalid UTF-8, empty and over-long names are tolerated."""
    assert parse_query(query) == expected


def test_parse_query_limits_count_and_length() -> None:
    """Thousands of parameters and huge values are cut to the documented limits."""
    pairs = parse_query(b"&".join(b"p%d=%s" % (n, b"v" * 2000) for n in range(5000)))
    assert len(pairs) <= MAX_PARAMS
    assert all(len(value) <= MAX_VALUE_CHARS for _, value in pairs)
    assert len(pairs[0][1]) == MAX_VALUE_CHARS


def test_map_params_uses_the_source_mapping() -> None:
    """Mapped params land in click fields, custom names and unknown params in extra."""
    rows = (
        ParameterRow(name="external_id", param="clickid"),
        ParameterRow(name="sub_id_1", param="zone"),
        ParameterRow(name="device_id", param="did"),
    )
    mapped = map_params(
        [
            ("clickid", "c1"),
            ("zone", "9"),
            ("did", "d"),
            ("keyword", "k"),
            ("x", "1"),
            ("zone", "2"),
        ],
        fields_by_param(rows),
    )
    assert mapped.fields == {"external_id": "c1", "sub_id_1": "9", "keyword": "k"}
    assert mapped.extra == {"device_id": "d", "x": "1"}


def test_choose_offer_follows_weights() -> None:
    """An offer with three times the weight is chosen about three times as often."""
    rng = random.Random(3)
    offers = [WeightedOffer(offer_id=1, weight=75), WeightedOffer(offer_id=2, weight=25)]
    counts = Counter(choose_offer(offers, rng) for _ in range(20000))
    assert 0.72 < counts[1] / 20000 < 0.78
    assert choose_offer([WeightedOffer(offer_id=1, weight=0)], rng) is None


@pytest.mark.parametrize(
    ("url", "params", "expected"),
    [
        ("https://o.test/p", "&sub1={subid}", "https://o.test/p?sub1={subid}"),
        ("https://o.test/p?a=1", "sub1={subid}", "https://o.test/p?a=1&sub1={subid}"),
        ("https://o.test/p?", "&s={subid}", "https://o.test/p?s={subid}"),
        ("https://o.test/p?a=1", "", "https://o.test/p?a=1"),
    ],
)
def test_join_offer_params(url: str, params: str, expected: str) -> None:
    """Network offer parameters are appended with the right separator."""
    assert join_offer_params(url, params) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.05", Decimal("0.050000")),
        ("1,5", Decimal("1.500000")),
        ("x", None),
        ("NaN", None),
        ("1e99", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_cost(value: str | None, expected: Decimal | None) -> None:
    """Costs from a query parameter are exact or absent, never an error."""
    assert parse_cost(value) == expected


def test_forwarded_for_takes_the_client_entry() -> None:
    """The left-most X-Forwarded-For entry is the visitor."""
    assert first_header_address(" 203.0.113.7, 10.0.0.1") == "203.0.113.7"


_QUERY_PIECES = [b"a", b"b", b"=", b"&", b"%", b"+", b"%00", b"%zz", b"%e2%82", b"%41", b"\xff"]


@settings(max_examples=2000, deadline=None)
@given(
    st.binary(max_size=300) | st.lists(st.sampled_from(_QUERY_PIECES), max_size=60).map(b"".join)
)
def test_parse_query_agrees_with_parse_qsl(query: bytes) -> None:
    """The hand-written parser gives what parse_qsl gives, cut to the same limits."""
    expected = []
    text = query.decode("latin-1")
    for name, value in parse_qsl(text, keep_blank_values=True, errors="replace"):
        if not name or len(name) > MAX_NAME_CHARS:
            continue
        expected.append((name.replace("\x00", ""), value.replace("\x00", "")[:MAX_VALUE_CHARS]))
    assert parse_query(query) == expected[:MAX_PARAMS]


def test_subid_digits_match_the_bit_layout() -> None:
    """The id is the 112-bit value (48 bits of ms, then 64 random) in base32, high digits first."""
    crockford = "0123456789abcdefghjkmnpqrstvwxyz"
    now_ms, bits = 1_763_800_000_123, 0xDEADBEEF_01234567
    value = (now_ms << 64) | bits
    expected = "".join(crockford[(value >> (5 * n)) & 31] for n in reversed(range(23)))
    assert new_subid(now_ms, bits) == expected
