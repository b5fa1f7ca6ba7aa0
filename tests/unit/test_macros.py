"""The Keitaro macro engine: encoding, raw values, mappings, dates, helpers, unknown names."""

from __future__ import annotations

import json
import random
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickloop.domain.macros import (
    MacroValue,
    Rendered,
    escape_json,
    format_value,
    quote_url,
    render,
)

NOW = datetime(2024, 3, 5, 12, 34, 56, tzinfo=UTC)  # unix 1709642096
CONVERTED = datetime(2024, 7, 1, 9, 0, 0, tzinfo=UTC)  # unix 1719824400
TELEGRAM = (
    "https://api.telegram.org/bot123:ABC/sendMessage?chat_id=42"
    "&text={campaign_name}:{status}:{conversion_revenue}"
)
APPMETRICA = (
    "https://api.appmetrica.yandex.ru/logs/v1/import/events?post_api_key=KEY&application_id=1"
    "&appmetrica_device_id={device_id}&event_name={status}&event_timestamp={con_versiontime:U}"
)
VALUES: dict[str, MacroValue] = {
    "subid": "3kq9zt1b",
    "external_id": "ext-42",
    "campaign_name": "Summer sale & more",
    "status": "sale",
    "payout": Decimal("10.50"),
    "device_id": "d1",
    "sub_id_1": None,
    "tid": 7,
    "date": NOW,
    "conversion_time": CONVERTED,
}
UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%")


def render_text(template: str, values: dict[str, MacroValue] | None = None) -> Rendered:
    """Render with the shared values, a fixed clock and a seeded generator."""
    return render(template, VALUES if values is None else values, now=NOW, rng=random.Random(1))


@pytest.mark.parametrize(
    ("template", "text", "unknown"),
    [
        (
            TELEGRAM,
            "https://api.telegram.org/bot123:ABC/sendMessage?chat_id=42"
            "&text=Summer%20sale%20%26%20more:sale:10.5",
            (),
        ),
        (
            APPMETRICA,
            "https://api.appmetrica.yandex.ru/logs/v1/import/events?post_api_key=KEY"
            "&application_id=1&appmetrica_device_id=d1&event_name=sale&event_timestamp=",
            ("con_versiontime",),
        ),
        ("?c={_campaign_name}", "?c=Summer sale & more", ()),
        ("?s={SubID}&t={TID}&x={_SUBID}", "?s=3kq9zt1b&t=7&x=3kq9zt1b", ()),
        ("?a={sub_id_1}&b=1", "?a=&b=1", ()),
        ("?a={externa_id}&b={externa_id}&c={zone}", "?a=&b=&c=", ("externa_id", "zone")),
        ("?a={_Externa_ID}", "?a=", ("_externa_id",)),
        ("?p={payout}&r={revenue}&_r={_conversion_revenue}", "?p=10.5&r=10.5&_r=10.5", ()),
        ("?k={external_id:UTF-8}", "?k=ext-42", ()),
        ("no macros here", "no macros here", ()),
        ("", "", ()),
    ],
)
def test_render(template: str, text: str, unknown: tuple[str, ...]) -> None:
    """Values are URL-encoded, `_` gives them raw, names ignore case, unknown names are listed."""
    assert render_text(template) == Rendered(text=text, unknown=unknown)


@pytest.mark.parametrize(
    ("template", "values", "text"),
    [
        ("{payout}", {"revenue": Decimal("3")}, "3"),
        ("{ua}|{useragent}", {"user_agent": "Mozilla/5.0"}, "Mozilla%2F5.0|Mozilla%2F5.0"),
        ("{referer}", {"referrer": "https://a.example/"}, "https%3A%2F%2Fa.example%2F"),
        ("{country_code}", {"country": "DE"}, "DE"),
        ("{keitaro_campaign_id}", {"campaign_id": 12}, "12"),
        ("{revenue}", {"revenue": Decimal("1"), "payout": Decimal("2")}, "1"),
    ],
)
def test_render_keitaro_synonyms(template: str, values: dict[str, MacroValue], text: str) -> None:
    """Keitaro's alternative names find the value under its main name, and an exact name wins."""
    assert render_text(template, values) == Rendered(text=text, unknown=())


@pytest.mark.parametrize(
    ("template", "value", "text"),
    [
        ("{status:lead=0 sale=1 rejected=2}", "lead", "0"),
        ("{status:lead=0 sale=1 rejected=2}", "sale", "1"),
        ("{status:lead=0 sale=1 rejected=2}", "rejected", "2"),
        ("{status:lead=0 sale=1 rejected=2}", "trash", "trash"),
        ("{status:Lead=0  SALE=1}", "sale", "1"),
        ("{status:lead=0 sale=1}", "Sale", "1"),
        ("{status:sale=a&b}", "sale", "a%26b"),
        ("{_status:sale=a&b}", "sale", "a&b"),
        ("{status:sale= lead=pending}", "sale", ""),
        ("{status:lead=0 sale=1}", "", ""),
    ],
)
def test_render_maps_values(template: str, value: str, text: str) -> None:
    """`word=replacement` pairs map a value case-insensitively; an unmapped value stays itself."""
    assert render_text(template, {"status": value}) == Rendered(text=text, unknown=())


def test_render_maps_any_macro() -> None:
    """A mapping argument works on any macro, not only on `status`."""
    values: dict[str, MacroValue] = {"sub_id_2": "x", "payout": Decimal("0.00")}
    result = render_text("{sub_id_2:x=approved}|{payout:0=free}", values)
    assert result == Rendered(text="approved|free", unknown=())


@pytest.mark.parametrize(
    ("template", "text", "unknown"),
    [
        ("{date}", "2024-03-05%2012%3A34%3A56", ()),
        ("{_date}", "2024-03-05 12:34:56", ()),
        ("{date:U}|{conversion_time:U}", "1709642096|1719824400", ()),
        ("{_conversion_time:Y-m-d H:i:s,Europe/Kyiv}", "2024-07-01 12:00:00", ()),
        ("{_date:Y-m-d H:i:s,Europe/Kyiv}", "2024-03-05 14:34:56", ()),
        ("{_conversion_time:c,America/New_York}", "2024-07-01T05:00:00-04:00", ()),
        ("{_date:D, d M Y}", "Tue, 05 Mar 2024", ()),
        ("{_date:D, d M Y,Europe/Kyiv}", "Tue, 05 Mar 2024", ()),
        ("{_date:H:i, UTC}", "12:34", ()),
        ("{_date:H:i,+05:30}|{_date:H:i,-0100}", "18:04|11:34", ()),
        ("{_date:Y-m-d,}", "2024-03-05", ()),
        ("{_date:,Europe/Kyiv}", "2024-03-05 14:34:56", ()),
        ("{_date:}", "2024-03-05 12:34:56", ()),
        ("{_date:H:i,Mars/Base}", "12:34", ("_date:H:i,Mars/Base",)),
        ("{_date:H:i,+25:00}", "12:34", ("_date:H:i,+25:00",)),
        ("{date:c}", "2024-03-05T12%3A34%3A56%2B00%3A00", ()),
    ],
)
def test_render_dates(template: str, text: str, unknown: tuple[str, ...]) -> None:
    """Datetimes use PHP date() letters in the given zone; bare ones are `Y-m-d H:i:s` UTC."""
    assert render_text(template) == Rendered(text=text, unknown=unknown)


def test_render_date_falls_back_to_now() -> None:
    """Without a click time `{date}` is the render time; a missing conversion time is unknown."""
    later = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    result = render("{_date}|{conversion_time:U}", {}, now=later, rng=random.Random(1))
    assert result == Rendered(text="2025-01-02 03:04:05|", unknown=("conversion_time",))


def test_render_naive_datetime_is_utc() -> None:
    """A naive datetime value is taken as UTC before the zone is applied."""
    values: dict[str, MacroValue] = {"date": datetime(2024, 3, 5, 12, 34, 56)}
    assert render_text("{_date:H:i,Europe/Kyiv}", values).text == "14:34"


@pytest.mark.parametrize(
    "template",
    [
        "{}",
        "{ x }",
        "{1abc}",
        "{subid",
        "}{",
        "{-x}",
        '{"a": 1, "b": [1, 2]}',
        "{sub id}",
        "{{",
        "%7Bsubid%7D",
    ],
)
def test_render_leaves_other_braces_alone(template: str) -> None:
    """Braces that do not hold a macro name pass through unchanged and report nothing."""
    assert render_text(template) == Rendered(text=template, unknown=())


def test_render_json_body_template() -> None:
    """In a JSON body only the macros change, and their values are JSON-escaped."""
    values: dict[str, MacroValue] = {"subid": 'a"b\\c\nd', "payout": Decimal("1.20")}
    template = '{"click": "{subid}", "sum": {payout}, "nested": {"x": "{{subid}}"}}'
    result = render(template, values, now=NOW, rng=random.Random(1), encode=escape_json)
    assert result.unknown == ()
    assert json.loads(result.text) == {
        "click": 'a"b\\c\nd',
        "sum": 1.2,
        "nested": {"x": '{a"b\\c\nd}'},
    }


@pytest.mark.parametrize(
    "value",
    [
        "line1\r\nSet-Cookie: x=1",
        "quote\" and ' and <tag>",
        "Привет, мир 👋 ü",
        "&status=sale&payout=1000#frag?x=/../",
        "%00%0d%0a" + "\x00\x7f",
        "x" * 10_240,
        "a b\tc+d",
        "\ud800lone surrogate",
    ],
)
def test_render_hostile_values_stay_inside_their_parameter(value: str) -> None:
    """A hostile value cannot break out of its query parameter nor put CR, LF or spaces in a URL."""
    result = render_text("https://ts.example/pb?cid={external_id}&x=1", {"external_id": value})
    assert set(result.text) <= UNRESERVED | set(":/?=&")
    query = parse_qs(urlsplit(result.text).query, keep_blank_values=True)
    safe_value = value.encode("utf-8", "replace").decode("utf-8")
    assert query == {"cid": [safe_value], "x": ["1"]}


def test_render_random_draws_within_bounds() -> None:
    """`{random:MIN,MAX}` draws integers in the closed range, bounds in either order."""
    rng = random.Random(5)
    draws = {
        int(part)
        for _ in range(200)
        for part in render("{random:1,3}|{random:3,1}", {}, now=NOW, rng=rng).text.split("|")
    }
    assert draws == {1, 2, 3}


def test_render_bare_random_uses_php_range() -> None:
    """A bare `{random}` is a non-negative integer up to PHP's mt_getrandmax()."""
    numbers = [
        int(render("{random}", {}, now=NOW, rng=random.Random(seed)).text) for seed in range(50)
    ]
    assert all(0 <= number <= 2**31 - 1 for number in numbers)
    assert len(set(numbers)) > 40


def test_render_sample_picks_every_item() -> None:
    """`{sample:a,b,c}` picks among the stripped items, and helpers win over values of that name."""
    rng = random.Random(5)
    picks = {
        render("{sample:a, b ,c}", {"sample": "zzz"}, now=NOW, rng=rng).text for _ in range(100)
    }
    assert picks == {"a", "b", "c"}


def test_render_is_repeatable_for_one_seed() -> None:
    """The same seed gives the same text, so a re-render of a delivery is identical."""
    template = "{random:1,1000000}-{sample:a,b,c,d,e,f}-{subid}"
    first = render(template, VALUES, now=NOW, rng=random.Random("delivery-9"))
    second = render(template, VALUES, now=NOW, rng=random.Random("delivery-9"))
    assert first == second


@pytest.mark.parametrize(
    ("template", "warning"),
    [
        ("{random:a,b}", "random:a,b"),
        ("{random:5}", "random:5"),
        ("{random:1,2,3}", "random:1,2,3"),
        ("{random:}", "random:"),
        ("{Random:x}", "random:x"),
        ("{sample}", "sample"),
        ("{sample:}", "sample:"),
        ("{sample: , }", "sample: , "),
    ],
)
def test_render_bad_helper_arguments(template: str, warning: str) -> None:
    """Unusable helper arguments render nothing and are reported as `name:ARGUMENT`."""
    assert render_text(f"<{template}>") == Rendered(text="<>", unknown=(warning,))


SPEC_MACROS = [
    "subid",
    "external_id",
    "keyword",
    "creative_id",
    "ad_campaign_id",
    "source",
    "ip",
    "user_agent",
    "referrer",
    "language",
    "country",
    "os",
    "browser",
    "device_type",
    "cost",
    "status",
    "original_status",
    "tid",
    "payout",
    "conversion_cost",
    "profit",
    "currency",
    "campaign_id",
    "campaign_name",
    "offer_id",
    "offer_name",
    "ts_id",
    "traffic_source_name",
    "affiliate_network_name",
    "device_id",
    *(f"sub_id_{n}" for n in range(1, 31)),
]


@pytest.mark.parametrize("name", SPEC_MACROS)
def test_render_every_spec_macro(name: str) -> None:
    """Every macro SPEC §4 lists renders its value under its own name, raw and encoded."""
    result = render_text(f"{{{name}}}|{{_{name}}}", {name: "v w"})
    assert result == Rendered(text="v%20w|v w", unknown=())


def test_rendered_is_frozen() -> None:
    """A rendered result is an immutable value."""
    result = render_text("{subid}")
    with pytest.raises(FrozenInstanceError):
        result.text = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        ("", ""),
        ("abc", "abc"),
        (0, "0"),
        (-17, "-17"),
        (True, "1"),
        (False, "0"),
        (Decimal("10.50"), "10.5"),
        (Decimal("-3"), "-3"),
        (Decimal("-3.000"), "-3"),
        (Decimal("0"), "0"),
        (Decimal("0.00"), "0"),
        (Decimal("-0.0"), "0"),
        (Decimal("0E-8"), "0"),
        (Decimal("1E+2"), "100"),
        (Decimal("1.5E-7"), "0.00000015"),
        (Decimal("1234567890123456789012345678901.25"), "1234567890123456789012345678901.25"),
        (Decimal("100"), "100"),
        (NOW, "1709642096"),
        (datetime(2024, 3, 5, 12, 34, 56), "1709642096"),
    ],
)
def test_format_value(value: MacroValue, text: str) -> None:
    """Decimals are plain without trailing zeros, datetimes unix seconds, None empty."""
    assert format_value(value) == text


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("", ""),
        ("AZaz09-._~", "AZaz09-._~"),
        ("a b", "a%20b"),
        ("a+b&c=d/e?f#g%h", "a%2Bb%26c%3Dd%2Fe%3Ff%23g%25h"),
        ("\r\n", "%0D%0A"),
        ("é", "%C3%A9"),
        ("👋", "%F0%9F%91%8B"),
        ("\ud800", "%3F"),
    ],
)
def test_quote_url(value: str, quoted: str) -> None:
    """Everything but RFC 3986 unreserved characters is percent-encoded as UTF-8."""
    assert quote_url(value) == quoted


@given(st.text())
def test_quote_url_round_trips(value: str) -> None:
    """Any text is encoded to unreserved characters and `%XX` only, and decodes back to itself."""
    quoted = quote_url(value)
    assert set(quoted) <= UNRESERVED
    assert unquote(quoted, errors="replace") == value.encode("utf-8", "replace").decode("utf-8")


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("plain", "plain"),
        ('say "hi"', 'say \\"hi\\"'),
        ("back\\slash", "back\\\\slash"),
        ("a\nb\tc\x01", "a\\nb\\tc\\u0001"),
        ("Привет 👋", "Привет 👋"),
        ("\ud800", "?"),
        ("{subid}", "{subid}"),
    ],
)
def test_escape_json(value: str, escaped: str) -> None:
    """Quotes, backslashes and control characters are escaped; other text stays readable."""
    assert escape_json(value) == escaped


@given(st.text())
def test_escape_json_round_trips(value: str) -> None:
    """Any text, escaped and put in quotes, parses back as the same JSON string."""
    expected = value.encode("utf-8", "replace").decode("utf-8")
    assert json.loads(f'"{escape_json(value)}"') == expected
