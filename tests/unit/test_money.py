"""Money rules: amounts from untrusted text and exact currency conversion."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from clickloop.domain.money import (
    Converted,
    MoneyProblem,
    convert,
    find_rate,
    format_rate,
    normalize_currency,
    parse_amount,
    parse_ecb_csv,
    parse_rate,
)

RATES = {"USD": "1.08", "JPY": "160.5", "GBP": "0.85", "BAD": "0", "TXT": "abc"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10", Decimal("10")),
        ("10.5", Decimal("10.5")),
        ("-3.25", Decimal("-3.25")),
        ("+4", Decimal("4")),
        (".5", Decimal("0.5")),
        ("7.", Decimal("7")),
        ("10,2.5", Decimal("12.5")),
        (" 1 , 2 , 3 ", Decimal("6")),
        ("10,-10", Decimal("0")),
        ("10,", Decimal("10")),
        ("0.0000005", Decimal("0.000000")),
        ("0.0000015", Decimal("0.000002")),
        ("0.0000025", Decimal("0.000002")),
    ],
)
def test_parse_amount_accepts_plain_decimals_and_sums_lists(text: str, expected: Decimal) -> None:
    """Plain decimals parse, comma lists are summed and rounding is half-even to 6 places."""
    assert parse_amount(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("abc", "payout is not a number: abc"),
        ("{payout}", "payout is not a number: {payout}"),
        ("1e5", "payout is not a number: 1e5"),
        ("NaN", "payout is not a number: NaN"),
        ("Infinity", "payout is not a number: Infinity"),
        ("1 000", "payout is not a number: 1 000"),
        (",", "payout is not a number: ,"),
        ("10,x", "payout is not a number: 10,x"),
        ("1000000000000", "payout is out of range: 1000000000000"),
        ("999999999999,1", "payout is out of range: 999999999999,1"),
    ],
)
def test_parse_amount_rejects_with_a_reason(text: str, reason: str) -> None:
    """Anything but plain decimal notation within range is a problem naming the value."""
    assert parse_amount(text) == MoneyProblem(reason=reason)


def test_parse_amount_names_the_field() -> None:
    """The reason names the parameter it came from."""
    assert parse_amount("x", field="cost") == MoneyProblem(reason="cost is not a number: x")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("usd", "USD"),
        (" Eur ", "EUR"),
        ("rub", "RUB"),
        ("US", MoneyProblem(reason="currency is not an ISO code: US")),
        ("dollars", MoneyProblem(reason="currency is not an ISO code: dollars")),
        ("U$D", MoneyProblem(reason="currency is not an ISO code: U$D")),
        ("\u0415UR", MoneyProblem(reason="currency is not an ISO code: \u0415UR")),
    ],
)
def test_normalize_currency(text: str, expected: str | MoneyProblem) -> None:
    """Three ASCII letters in any case make a code; anything else is a problem."""
    assert normalize_currency(text) == expected


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        ("USD", "USD", Decimal(1)),
        ("EUR", "USD", Decimal("1.08")),
        ("USD", "EUR", Decimal("0.9259259259259259")),
        ("GBP", "USD", Decimal("1.270588235294118")),
        ("EUR", "EUR", Decimal(1)),
        ("XXX", "USD", MoneyProblem(reason="unknown currency: XXX")),
        ("USD", "XXX", MoneyProblem(reason="unknown currency: XXX")),
        ("BAD", "USD", MoneyProblem(reason="unknown currency: BAD")),
        ("TXT", "USD", MoneyProblem(reason="unknown currency: TXT")),
    ],
)
def test_find_rate_goes_through_eur(
    source: str, target: str, expected: Decimal | MoneyProblem
) -> None:
    """Cross rates divide the two per-EUR rates; zero or garbage rows count as unknown."""
    assert find_rate(source, target, RATES) == expected


@pytest.mark.parametrize(
    ("amount", "source", "target", "expected_amount"),
    [
        (Decimal("10"), "EUR", "USD", Decimal("10.800000")),
        (Decimal("100"), "JPY", "USD", Decimal("0.672897")),
        (Decimal("-5"), "EUR", "USD", Decimal("-5.400000")),
        (Decimal("10"), "USD", "USD", Decimal("10.000000")),
        (Decimal("999999999999"), "EUR", "JPY", Decimal("160499999999839.5")),
    ],
)
def test_convert_rounds_half_even_and_keeps_the_original(
    amount: Decimal, source: str, target: str, expected_amount: Decimal
) -> None:
    """The converted amount is exact to 6 places and carries the original and the rate."""
    result = convert(amount, from_currency=source, to_currency=target, rates=RATES)
    assert isinstance(result, Converted)
    assert result.amount == expected_amount
    assert result.amount.as_tuple().exponent == -6
    assert (result.original_amount, result.original_currency) == (amount, source)
    assert result.currency == target
    assert result.rate == find_rate(source, target, RATES)


def test_convert_reports_an_unknown_currency() -> None:
    """An unknown code is a problem value, not an exception."""
    result = convert(Decimal(1), from_currency="ZZZ", to_currency="USD", rates=RATES)
    assert result == MoneyProblem(reason="unknown currency: ZZZ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.08", Decimal("1.08")),
        (" 160 ", Decimal("160")),
        ("0", MoneyProblem(reason="rate is not a positive number: 0")),
        ("-1", MoneyProblem(reason="rate is not a positive number: -1")),
        ("x", MoneyProblem(reason="rate is not a positive number: x")),
    ],
)
def test_parse_rate(text: str, expected: Decimal | MoneyProblem) -> None:
    """Hand-set rates must be positive plain decimals."""
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    ("rate", "text"),
    [
        (Decimal("1"), "1"),
        (Decimal("160.500"), "160.5"),
        (Decimal("1E+2"), "100"),
        (Decimal("0.0000194"), "0.0000194"),
    ],
)
def test_format_rate_is_plain_text(rate: Decimal, text: str) -> None:
    """Stored rates have no exponent and no trailing zeros, and read back equal."""
    assert format_rate(rate) == text
    assert Decimal(text) == rate


def test_parse_ecb_csv_reads_the_daily_file() -> None:
    """The ECB daily CSV gives its date and per-EUR rates; trailing commas and N/A are skipped."""
    text = "Date, USD, JPY, RUB, GBP, \n30 October 2026, 1.1172, 175.68, N/A, 0.83380, \n"
    assert parse_ecb_csv(text) == (
        date(2026, 10, 30),
        {"USD": Decimal("1.1172"), "JPY": Decimal("175.68"), "GBP": Decimal("0.83380")},
    )


def test_parse_ecb_csv_reads_the_history_file_newest_row() -> None:
    """The history file's first data row (the newest) is used."""
    text = "Date,USD,\n2026-10-30,1.1172,\n2026-10-29,1.113,\n"
    assert parse_ecb_csv(text) == (date(2026, 10, 30), {"USD": Decimal("1.1172")})


@pytest.mark.parametrize(
    "text", ["", "Date,USD\n", "<html>", "Date,USD\nyesterday,1\n", "Date,USD\n2026-10-30,N/A\n"]
)
def test_parse_ecb_csv_rejects_other_files(text: str) -> None:
    """Anything that is not an ECB rates file raises ValueError rather than storing nonsense."""
    with pytest.raises(ValueError):
        parse_ecb_csv(text)
