"""Postback parameter parsing (names, aliases, values) and the answers."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from clickloop.domain.postbacks import (
    GIF_PIXEL,
    Ignored,
    Outcome,
    Postback,
    answer_postback,
    canonical_params,
    is_sender_allowed,
    parse_date,
    parse_postback,
    read_pairs,
)

ALIASES = {"clickid": "subid", "Type": "status", "profit": "payout"}


def parse(query: str, **kwargs: str) -> Postback | Ignored:
    return parse_postback(read_pairs(query.encode()), aliases=ALIASES, **kwargs)


def parsed(query: str) -> Postback:
    result = parse(query)
    assert isinstance(result, Postback), result
    return result


@pytest.mark.parametrize(
    ("query", "field", "expected"),
    [
        ("subid=abc&status=sale", "subid", "abc"),
        ("SUBID=abc&Status=sale", "subid", "abc"),
        ("clickid=abc&type=sale", "status", "sale"),
        ("CLICKID=abc&TYPE=Sale", "status", "Sale"),
        ("subid=abc&status=%20sale%20", "status", "sale"),
        ("subid=abc&status=sale&payout=10", "payout", Decimal("10")),
        ("subid=abc&status=sale&payout=-10.5", "payout", Decimal("-10.5")),
        ("subid=abc&status=sale&payout=10,2.5", "payout", Decimal("12.5")),
        ("subid=abc&status=sale&revenue=7", "payout", Decimal("7")),
        ("subid=abc&status=sale&REVENUE=7", "payout", Decimal("7")),
        ("subid=abc&status=sale&profit=3", "payout", Decimal("3")),
        ("subid=abc&status=sale&payout=", "payout", None),
        ("subid=abc&status=sale", "payout", None),
        ("subid=abc&status=sale&currency=eur", "currency", "EUR"),
        ("subid=abc&status=sale&currency=", "currency", None),
        ("subid=abc&status=sale&tid=42", "tid", "42"),
        ("subid=abc&status=sale", "tid", ""),
        ("subid=abc&status=sale&cost=0.25", "cost", Decimal("0.25")),
        (
            "subid=abc&status=sale&date=1700000000",
            "date",
            datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
        ),
        ("subid=abc&status=sale&return=OK", "answer", "OK"),
        ("subid=abc&status=sale", "answer", None),
        ("subid=abc&status=sale&from=admitad", "sender", "admitad"),
        ("subid=abc&status=sale&ignore_status=test,Check", "ignore_statuses", ("test", "check")),
        # a parameter sent under its own name beats one sent under an alias
        ("clickid=alias&subid=own&status=sale", "subid", "own"),
        ("subid=first&subid=second&status=sale", "subid", "first"),
    ],
)
def test_parse_postback_fields(query: str, field: str, expected: object) -> None:
    """Each Keitaro parameter lands in its field, names matched case-insensitively."""
    assert getattr(parsed(query), field) == expected


def test_parse_postback_splits_click_fields_trainings_and_params() -> None:
    """Click-overwriting params, trainings and other params are kept apart."""
    postback = parsed(
        "subid=a&status=new&sub_id_1=x&SUB_ID_30=y&keyword=k&external_id=e&creative_id=c"
        "&ad_campaign_id=ad&source=s&cost=1&registration_status=new,Registered"
        "&sale_status=billed&vip_status=gold&extra_param_1=z&return=OK&from=net"
    )
    assert postback.click_fields == {
        "sub_id_1": "x",
        "sub_id_30": "y",
        "keyword": "k",
        "external_id": "e",
        "creative_id": "c",
        "ad_campaign_id": "ad",
        "source": "s",
    }
    assert postback.cost == Decimal(1)
    assert postback.trainings == {
        "registration": ("new", "registered"),
        "sale": ("billed",),
        "vip": ("gold",),
    }
    assert postback.params == {
        "sub_id_1": "x",
        "sub_id_30": "y",
        "keyword": "k",
        "external_id": "e",
        "creative_id": "c",
        "ad_campaign_id": "ad",
        "source": "s",
        "extra_param_1": "z",
    }


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("status=sale", "subid missing"),
        ("subid=&status=sale", "subid missing"),
        ("subid=%20&status=sale", "subid missing"),
        ("subid=a", "status missing"),
        ("subid=a&status=", "status missing"),
        ("subid=a&status=sale&payout=abc", "payout is not a number: abc"),
        ("subid=a&status=sale&payout={payout}", "payout is not a number: {payout}"),
        ("subid=a&status=sale&revenue=1e3", "payout is not a number: 1e3"),
        ("subid=a&status=sale&cost=x", "cost is not a number: x"),
        ("subid=a&status=sale&currency=dollars", "currency is not an ISO code: dollars"),
        ("subid=a&status=sale&tid=" + "t" * 201, "tid is too long (max 200)"),
        ("subid=a&status=" + "s" * 201, "status is too long (max 200)"),
    ],
)
def test_parse_postback_ignores_with_a_reason(query: str, reason: str) -> None:
    """Unusable postbacks become an Ignored value with the reason for the log."""
    result = parse(query)
    assert isinstance(result, Ignored)
    assert result.reason == reason
    assert result.subid == ("" if reason == "subid missing" else "a")


def test_cookie_subid_stands_in_for_a_missing_subid() -> None:
    """A pixel on the tracker's domain may omit subid; the cookie's value is used."""
    result = parse("status=lead&payout=10", cookie_subid="fromcookie")
    assert isinstance(result, Postback)
    assert result.subid == "fromcookie"
    assert parsed("subid=explicit&status=lead").subid == "explicit"


def test_bad_date_is_a_note_not_a_loss() -> None:
    """An unparseable date falls back to now and leaves a note rather than dropping the sale."""
    postback = parsed("subid=a&status=sale&date={date}")
    assert postback.date is None
    assert postback.notes == ("date is not unix seconds or ISO 8601, used now: {date}",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1700000000", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        ("1700000000.9", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        ("1700000000123", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        ("2024-03-01T12:00:00Z", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("2024-03-01T12:00:00+02:00", datetime(2024, 3, 1, 10, tzinfo=UTC)),
        ("2024-03-01 12:00:00", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("2024-03-01", datetime(2024, 3, 1, tzinfo=UTC)),
        ("12", None),
        ("99999999999999999", None),
        ("1899-01-01", None),
        ("yesterday", None),
        ("", None),
    ],
)
def test_parse_date(text: str, expected: datetime | None) -> None:
    """Unix seconds or milliseconds and ISO 8601 (naive = UTC) within 2000..2100."""
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    ("query", "body", "content_type", "expected"),
    [
        (b"a=1", b"", "", [("a", "1")]),
        (
            b"a=1",
            b"b=2&c=%20x",
            "application/x-www-form-urlencoded",
            [("a", "1"), ("b", "2"), ("c", " x")],
        ),
        (
            b"",
            b'{"subid": "s", "payout": 10.50, "n": 3, "ok": true, "none": null}',
            "application/json",
            [("subid", "s"), ("payout", "10.50"), ("n", "3"), ("ok", "true"), ("none", "")],
        ),
        (
            b"",
            b'{"payout": [10, 2.5], "obj": {"k": 1}}',
            "",
            [("payout", "10,2.5"), ("obj", '{"k": "1"}')],
        ),
        (b"", b"[1, 2]", "application/json", []),
        (b"", b"{broken", "application/json", []),
        (b"", b"\xff\xfe{", "application/json", []),
        (b"", b'{"' + b"n" * 65 + b'": "v", "": "e"}', "application/json", []),
    ],
)
def test_read_pairs_takes_query_then_form_or_json_body(
    query: bytes, body: bytes, content_type: str, expected: list[tuple[str, str]]
) -> None:
    """Form and JSON bodies add pairs after the query; broken bodies add nothing."""
    assert read_pairs(query, body, content_type) == expected


def test_read_pairs_caps_the_number_of_parameters() -> None:
    """A flood of parameters is cut to the documented limit."""
    body = "&".join(f"p{n}=v" for n in range(500)).encode()
    assert len(read_pairs(b"q=1", body)) == 100


def test_canonical_params_applies_built_in_alias_unless_overridden() -> None:
    """`revenue` is payout by default; a configured alias may point it elsewhere."""
    assert canonical_params([("revenue", "1")]) == {"payout": "1"}
    assert canonical_params([("revenue", "1")], {"revenue": "cost"}) == {"cost": "1"}


@pytest.mark.parametrize(
    ("outcome", "kwargs", "status", "content_type", "body"),
    [
        (Outcome.ACCEPTED, {}, 200, "text/plain; charset=utf-8", b"OK"),
        (Outcome.UPDATED, {"return_text": "done"}, 200, "text/plain; charset=utf-8", b"done"),
        (Outcome.DUPLICATE, {"return_text": ""}, 200, "text/plain; charset=utf-8", b"OK"),
        (Outcome.ACCEPTED, {"return_text": "img"}, 200, "image/gif", GIF_PIXEL),
        (Outcome.ACCEPTED, {"return_text": "IMG"}, 200, "image/gif", GIF_PIXEL),
        (
            Outcome.IGNORED,
            {"reason": "subid missing", "return_text": "OK"},
            200,
            "text/plain; charset=utf-8",
            b"ERROR: subid missing",
        ),
        (
            Outcome.IGNORED,
            {"reason": "x", "ignored_status_code": 400},
            400,
            "text/plain; charset=utf-8",
            b"ERROR: x",
        ),
        (
            Outcome.IGNORED,
            {"reason": "in ignore_status", "silent": True, "return_text": "img"},
            200,
            "image/gif",
            GIF_PIXEL,
        ),
    ],
)
def test_answer_postback(
    outcome: Outcome, kwargs: dict[str, object], status: int, content_type: str, body: bytes
) -> None:
    """Success answers `return` (or a GIF, or OK); ignored answers ERROR with the reason."""
    answer = answer_postback(outcome, **kwargs)  # type: ignore[arg-type]
    assert (answer.status, answer.content_type, answer.body) == (status, content_type, body)


def test_gif_pixel_is_a_1x1_gif() -> None:
    """The pixel answer is a well-formed 1x1 GIF."""
    assert GIF_PIXEL.startswith(b"GIF89a\x01\x00\x01\x00")
    assert GIF_PIXEL.endswith(b";")


@pytest.mark.parametrize(
    ("query", "body", "expected"),
    [
        (b"a=x%00y", b"", [("a", "xy")]),
        (b"", b'{"a": "\\ud800z"}', [("a", "?z")]),
        (b"a=%FF", b"", [("a", "\ufffd")]),
    ],
)
def test_read_pairs_makes_values_storable(
    query: bytes, body: bytes, expected: list[tuple[str, str]]
) -> None:
    """NUL bytes, lone surrogates and invalid UTF-8 never reach the database."""
    assert read_pairs(query, body, "application/json") == expected


@pytest.mark.parametrize(
    ("address", "allowed", "expected"),
    [
        ("1.2.3.4", [], True),
        ("1.2.3.4", ["1.2.3.4"], True),
        ("1.2.3.4", ["1.2.3.0/24"], True),
        ("1.2.4.4", ["1.2.3.0/24"], False),
        ("::1", ["::1/128"], True),
        ("1.2.3.4", ["bogus", "1.2.3.4/32"], True),
        ("1.2.3.4", ["bogus"], False),
        ("not-an-ip", ["1.2.3.4"], False),
    ],
)
def test_is_sender_allowed(address: str, allowed: list[str], expected: bool) -> None:
    """An empty allowlist admits everyone; otherwise the address must be in an entry."""
    assert is_sender_allowed(address, allowed) is expected
