"""Money rules: parsing untrusted amounts and converting between currencies, exactly.

Rates are "units of the currency per 1 EUR" (the ECB convention); amounts are Decimal, not float.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation

MICRO = Decimal("0.000001")
# Money columns hold BIGINT micro-units (max ~9.2e12); stay well inside that.
MAX_AMOUNT = Decimal(10) ** 12
BASE_CURRENCY = "EUR"
# Rates keep 16 significant digits: far beyond any quote's precision, and fits the 40-char column.
_RATE_CONTEXT = Context(prec=16, rounding=ROUND_HALF_EVEN)
# Wide enough that amount * rate is exact before the final quantize.
_PRODUCT_CONTEXT = Context(prec=60, rounding=ROUND_HALF_EVEN)
# Plain decimal notation only: no exponents ("1e999999"), no "NaN"/"Infinity", no thousands marks.
_AMOUNT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_CODE = re.compile(r"[A-Za-z]{3}")


@dataclass(frozen=True, slots=True, kw_only=True)
class MoneyProblem:
    """Why an amount, a currency code or a conversion is unusable, in words for the log."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Converted:
    """An amount in the target currency, with the original amount and the rate that was used."""

    amount: Decimal
    currency: str
    original_amount: Decimal
    original_currency: str
    rate: Decimal  # amount = round(original_amount * rate, 6)


def parse_amount(text: str, *, field: str = "payout") -> Decimal | MoneyProblem:
    """An amount from untrusted text; a comma-separated list is summed (networks send `CPA,RS`).

    Empty parts are skipped (`10,` is 10). The result is rounded half-even to 6 places.
    """
    parts = [part.strip() for part in text.split(",")]
    values = [part for part in parts if part]
    if not values or not all(_AMOUNT.fullmatch(part) for part in values):
        return MoneyProblem(reason=f"{field} is not a number: {text}")
    total = sum((Decimal(part) for part in values), Decimal(0))
    if abs(total) >= MAX_AMOUNT:
        return MoneyProblem(reason=f"{field} is out of range: {text}")
    return total.quantize(MICRO, rounding=ROUND_HALF_EVEN)


def normalize_currency(text: str) -> str | MoneyProblem:
    """An ISO 4217-shaped code in upper case (`usd` → `USD`); whether it is known comes later."""
    code = text.strip()
    if not _CODE.fullmatch(code):
        return MoneyProblem(reason=f"currency is not an ISO code: {text}")
    return code.upper()


def parse_rate(text: str) -> Decimal | MoneyProblem:
    """A "units per 1 EUR" rate: a positive plain decimal."""
    value = text.strip()
    if not _AMOUNT.fullmatch(value) or Decimal(value) <= 0 or Decimal(value) >= MAX_AMOUNT:
        return MoneyProblem(reason=f"rate is not a positive number: {text}")
    return Decimal(value)


def find_rate(
    from_currency: str, to_currency: str, rates: Mapping[str, Decimal | str]
) -> Decimal | MoneyProblem:
    """The rate that turns one unit of `from_currency` into `to_currency`, via EUR."""
    if from_currency == to_currency:
        return Decimal(1)
    per_eur: list[Decimal] = []
    for code in (from_currency, to_currency):
        value = Decimal(1) if code == BASE_CURRENCY else _lookup(rates, code)
        if value is None:
            return MoneyProblem(reason=f"unknown currency: {code}")
        per_eur.append(value)
    return _RATE_CONTEXT.divide(per_eur[1], per_eur[0])


def convert(
    amount: Decimal,
    *,
    from_currency: str,
    to_currency: str,
    rates: Mapping[str, Decimal | str],
) -> Converted | MoneyProblem:
    """Convert `amount` at the table's rate, rounding half-even to 6 places."""
    rate = find_rate(from_currency, to_currency, rates)
    if isinstance(rate, MoneyProblem):
        return rate
    product = _PRODUCT_CONTEXT.multiply(amount, rate)
    return Converted(
        amount=product.quantize(MICRO, rounding=ROUND_HALF_EVEN, context=_PRODUCT_CONTEXT),
        currency=to_currency,
        original_amount=amount,
        original_currency=from_currency,
        rate=rate,
    )


def format_rate(rate: Decimal) -> str:
    """A rate as plain text for storage: no exponent, no trailing zeros (`0.85`, `160`)."""
    text = f"{rate:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _lookup(rates: Mapping[str, Decimal | str], code: str) -> Decimal | None:
    raw = rates.get(code)
    if raw is None:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        return None
    # A broken table row must not divide by zero or flip signs; treat it as missing.
    return value if value.is_finite() and value > 0 else None


def parse_ecb_csv(text: str) -> tuple[date, dict[str, Decimal]]:
    """The ECB reference-rate CSV (`eurofxref.csv`, or the newest row of the history file).

    Returns the date the rates are for and "units per 1 EUR" for each currency it quotes;
    raises ValueError when the text is not such a file.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        raise ValueError("not an ECB rates file: fewer than two lines")
    names = [cell.strip() for cell in lines[0].split(",")]
    cells = [cell.strip() for cell in lines[1].split(",")]
    if not names or names[0] != "Date":
        raise ValueError("not an ECB rates file: no Date column")
    as_of = _ecb_date(cells[0])
    rates: dict[str, Decimal] = {}
    for name, cell in zip(names[1:], cells[1:], strict=False):
        if _CODE.fullmatch(name) and _AMOUNT.fullmatch(cell) and Decimal(cell) > 0:
            rates[name.upper()] = Decimal(cell)
    if not rates:
        raise ValueError("not an ECB rates file: no rates")
    return as_of, rates


def parse_ecb_xml(text: str) -> tuple[date, dict[str, Decimal]]:
    """The ECB daily reference-rate XML (`eurofxref-daily.xml`): its first dated `Cube`.

    Returns the date and "units per 1 EUR" per currency; raises ValueError when the text is not
    such a file. The ECB's file declares no DTD, so one (entity expansion bombs) is refused.
    """
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise ValueError("not an ECB rates file: it declares a DTD")
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise ValueError(f"not an ECB rates file: {exc}") from exc
    dated = next(
        (e for e in root.iter() if _local_name(e.tag) == "Cube" and "time" in e.attrib), None
    )
    if dated is None:
        raise ValueError("not an ECB rates file: no dated Cube element")
    as_of = _ecb_date(dated.attrib["time"].strip())
    rates: dict[str, Decimal] = {}
    for cube in dated:
        name, cell = cube.attrib.get("currency", "").strip(), cube.attrib.get("rate", "").strip()
        if _CODE.fullmatch(name) and _AMOUNT.fullmatch(cell) and Decimal(cell) > 0:
            rates[name.upper()] = Decimal(cell)
    if not rates:
        raise ValueError("not an ECB rates file: no rates")
    return as_of, rates


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _ecb_date(text: str) -> date:
    for pattern in ("%d %B %Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    raise ValueError(f"not an ECB rates file: bad date {text!r}")
