"""What a postback does to the conversion with its identity (subid, tid).

Create, update, duplicate (applying it would change nothing) or ignore as a stale status;
a sale with a new tid on a click that already has a sale becomes a rebill when the offer allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from clickloop.domain.money import Converted
from clickloop.domain.statuses import ConversionType

# A late lead must not demote a settled conversion (networks deliver out of order).
_SETTLED = frozenset({ConversionType.SALE, ConversionType.REJECTED, ConversionType.REBILL})
_SALES = frozenset({ConversionType.SALE, ConversionType.REBILL})


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversionState:
    """The stored fields of a conversion that a postback can set."""

    type: str
    original_status: str
    payout: Decimal  # tracker currency
    currency: str
    original_payout: Decimal
    original_currency: str
    rate: Decimal
    cost: Decimal | None
    converted_at: datetime
    params: Mapping[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Incoming:
    """A postback's request for one identity; None means "not sent"."""

    type: str  # resolved conversion type
    original_status: str
    payout: Converted | None
    cost: Decimal | None
    date: datetime | None
    params: Mapping[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Create:
    state: ConversionState


@dataclass(frozen=True, slots=True, kw_only=True)
class Update:
    state: ConversionState
    previous: ConversionState


@dataclass(frozen=True, slots=True, kw_only=True)
class Duplicate:
    state: ConversionState


@dataclass(frozen=True, slots=True, kw_only=True)
class Stale:
    reason: str


Decision = Create | Update | Duplicate | Stale


def decide_conversion(
    incoming: Incoming,
    *,
    existing: ConversionState | None,
    default_payout: Converted,
    now: datetime,
    click_has_sale: bool = False,
    upsell_allowed: bool = False,
) -> Decision:
    """Decide the effect of `incoming` on the identity's stored conversion (`existing`).

    `default_payout` (the offer's payout, converted) is used when a new conversion has no payout.
    `click_has_sale`: another conversion of the same click is already a sale or rebill.
    On an update, values that were not sent keep their stored value (a `status=rejected`
    postback without payout keeps the payout), and params are merged over the stored ones.
    """
    if existing is None:
        kind = incoming.type
        if kind == ConversionType.SALE and click_has_sale and upsell_allowed:
            kind = ConversionType.REBILL
        sent = incoming.payout or default_payout
        return Create(
            state=ConversionState(
                type=kind,
                original_status=incoming.original_status,
                payout=sent.amount,
                currency=sent.currency,
                original_payout=sent.original_amount,
                original_currency=sent.original_currency,
                rate=sent.rate,
                cost=incoming.cost,
                converted_at=incoming.date or now,
                params=dict(incoming.params),
            )
        )
    if incoming.type == ConversionType.LEAD and existing.type in _SETTLED:
        return Stale(reason=f"stale status: lead after {existing.type}")
    kind = incoming.type
    if kind == ConversionType.SALE and existing.type == ConversionType.REBILL:
        # A repeated upsell postback is still the upsell, not a second first sale.
        kind = ConversionType.REBILL
    state = replace(
        existing,
        type=kind,
        original_status=incoming.original_status,
        cost=existing.cost if incoming.cost is None else incoming.cost,
        converted_at=incoming.date or existing.converted_at,
        params={**existing.params, **incoming.params},
    )
    payout = incoming.payout
    # The same original amount keeps its stored conversion: a re-sent postback stays a
    # duplicate even when the exchange rate moved in between.
    if payout is not None and (payout.original_amount, payout.original_currency) != (
        existing.original_payout,
        existing.original_currency,
    ):
        state = replace(
            state,
            payout=payout.amount,
            currency=payout.currency,
            original_payout=payout.original_amount,
            original_currency=payout.original_currency,
            rate=payout.rate,
        )
    if state == existing:
        return Duplicate(state=existing)
    return Update(state=state, previous=existing)


def is_sale(type_name: str) -> bool:
    """Whether a stored conversion of this type counts as "the click already has a sale"."""
    return type_name in _SALES
