"""Ratio metrics worked out in integers equal the exact quotient rounded half to even."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from clickloop.services.report_metrics import metric

# name -> (numerator, denominator, minus, scale, decimal places), as docs/reports.md defines them
RATIOS = {
    "cr": (("conversions",), ("clicks",), (), Fraction(100), 2),
    "roi": (("revenue",), ("cost",), ("cost",), Fraction(100), 2),
    "projected_roi": (("revenue", "m:lead"), ("cost",), ("cost",), Fraction(100), 2),
    "approval_rate": (("n:sale",), ("n:sale", "n:rejected", "n:lead"), (), Fraction(100), 2),
    "epc": (("revenue",), ("clicks",), (), Fraction(1, 10**6), 4),
    "cpc": (("cost",), ("clicks",), (), Fraction(1, 10**6), 4),
    "cpa": (("cost",), ("conversions",), (), Fraction(1, 10**6), 2),
}
BASES = ("clicks", "conversions", "revenue", "cost", "m:lead", "n:sale", "n:rejected", "n:lead")
AMOUNT = st.one_of(st.integers(-50, 50), st.integers(-(10**15), 10**15))


@given(st.sampled_from(sorted(RATIOS)), st.fixed_dictionaries({b: AMOUNT for b in BASES}))
def test_a_ratio_is_the_exact_quotient_rounded_half_to_even(name: str, bases: dict) -> None:
    numerator, denominator, minus, scale, places = RATIOS[name]
    below = sum(bases[n] for n in denominator)
    found = metric(name).value(bases)
    if not below:
        assert found is None
        return
    top = sum(bases[n] for n in numerator) - sum(bases[n] for n in minus)
    exact = round(Fraction(top) * scale / below, places)  # Fraction rounds half to even
    assert isinstance(found, Decimal)
    assert found == Decimal(exact.numerator) / Decimal(exact.denominator)
    assert found.as_tuple().exponent == -places  # shown with its places: 12.50, not 12.5


def test_halves_go_to_even_and_a_tiny_loss_is_zero() -> None:
    assert metric("cr").value({"conversions": 1, "clicks": 800}) == Decimal("0.12")  # 0.125
    assert metric("cr").value({"conversions": 3, "clicks": 800}) == Decimal("0.38")  # 0.375
    roi = metric("roi").value({"revenue": 10**7 - 1, "cost": 10**7})  # -0.00001 %
    assert str(roi) == "0.00"  # not -0.00
