"""The postback use case: judge a received postback, apply it, log it, queue its S2S, in one
transaction. The endpoint, re-processing from the log and `import conversions` all come here.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, select
from sqlalchemy.engine import Connection, Engine

from clickloop.domain.conversions import (
    ConversionState,
    Decision,
    Duplicate,
    Incoming,
    Stale,
    Update,
    decide_conversion,
)
from clickloop.domain.money import Converted, MoneyProblem, convert
from clickloop.domain.postbacks import (
    BUILT_IN_ALIASES,
    Ignored,
    Outcome,
    Postback,
    is_sender_allowed,
    parse_postback,
    read_pairs,
)
from clickloop.domain.statuses import (
    ConversionType,
    StatusIgnored,
    Trainings,
    check_type_name,
    resolve_status,
)
from clickloop.errors import Conflict, InvalidInput, NotFound
from clickloop.services.entities import bump_config_version, read_settings
from clickloop.services.outbox import queue_deliveries
from clickloop.services.queries import received_conditions
from clickloop.services.rates import read_rate_table
from clickloop.storage import conversions as repo
from clickloop.storage import report_cubes as cubes
from clickloop.storage import tables as t

log = logging.getLogger(__name__)

# A subid longer than the log column is cut there (it cannot match a click anyway).
_LOG_SUBID_CHARS = 200
# A concurrent twin can take the identity between our read and our insert; re-read and decide
# again. Twice is enough: after a conflict the row exists and the next round is an update.
_CONFLICT_ROUNDS = 3
COOKIE_HEADER = "cookie:_subid"
SALE_TYPES = (ConversionType.SALE, ConversionType.REBILL)


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferTerms:
    payout: Decimal
    currency: str
    upsell: bool
    affiliate_network_id: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PostbackRules:
    """The configuration postbacks are judged by; a snapshot rebuilt when `version` moves."""

    version: int
    currency: str
    aliases: Mapping[str, str]
    global_trainings: Trainings
    network_trainings: Mapping[int, Trainings]
    network_allowed_ips: Mapping[int, tuple[str, ...]]
    custom_types: frozenset[str]
    rates: Mapping[str, Decimal]
    offers: Mapping[int, OfferTerms]
    ignored_status_code: int = 200
    # Which clicks can have S2S targets at all, so that the writer skips the outbox query for
    # the rest: campaigns with their own postbacks, sources with a URL, each campaign's source.
    s2s_campaigns: frozenset[int] = frozenset()
    s2s_sources: frozenset[int] = frozenset()
    campaign_sources: Mapping[int, int | None] = field(default_factory=dict)

    # Each offer's default payout, converted once per snapshot (a memo, filled on first use).
    _default_payouts: dict[int | None, Converted] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def default_payout(self, offer_id: int | None) -> Converted:
        """The offer's payout in the tracker currency; zero without an offer or a rate for it."""
        known = self._default_payouts.get(offer_id)
        if known is None:
            offer = self.offers.get(offer_id) if offer_id is not None else None
            known = self._default_payouts[offer_id] = _default_payout(offer, self)
        return known

    def may_have_s2s(self, click: repo.ClickRef) -> bool:
        """False when no S2S target can match a conversion of `click` (then none is queued)."""
        source = click.traffic_source_id
        if source is None:
            source = self.campaign_sources.get(click.campaign_id)
        return click.campaign_id in self.s2s_campaigns or source in self.s2s_sources


@dataclass(frozen=True, slots=True, kw_only=True)
class RawPostback:
    """A request as received, verbatim enough to be processed again from the log."""

    received_at: datetime
    method: str
    query: str
    body: str = ""
    content_type: str = ""
    remote_ip: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def cookie_subid(self) -> str:
        return self.headers.get(COOKIE_HEADER, "")


@dataclass(frozen=True, slots=True, kw_only=True)
class PostbackResult:
    log_id: int
    outcome: Outcome
    reason: str
    conversion_id: int | None = None
    silent: bool = False  # ignored on the sender's request (ignore_status): answered as success
    answer: str | None = None  # the `return` text


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What became of a postback: its outcome, and what its log row records."""

    outcome: Outcome
    reason: str = ""
    subid: str = ""
    conversion_id: int | None = None
    silent: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Judged:
    """A postback that passed every check: what it asks of the conversion (subid, tid)."""

    postback: Postback
    click: repo.ClickRef
    incoming: Incoming
    default_payout: Converted
    upsell: bool  # the click's offer allows upsells
    notes: str


def load_rules(conn: Connection) -> PostbackRules:
    settings = read_settings(conn)
    n = t.affiliate_networks.c
    ts = t.traffic_sources.c
    networks = list(conn.execute(select(n.id, n.status_trainings, n.postback_allowed_ips)))
    offers = {
        row.id: OfferTerms(
            payout=row.payout,
            currency=row.currency,
            upsell=bool(row.upsell),
            affiliate_network_id=row.affiliate_network_id,
        )
        for row in conn.execute(select(t.offers))
    }
    return PostbackRules(
        version=int(settings["config_version"]),
        currency=str(settings["currency"]),
        aliases={**BUILT_IN_ALIASES, **dict(settings.get("aliases") or {})},
        global_trainings=dict(settings.get("status_trainings") or {}),
        network_trainings={row.id: dict(row.status_trainings or {}) for row in networks},
        network_allowed_ips={row.id: tuple(row.postback_allowed_ips or ()) for row in networks},
        custom_types=frozenset(name for name, _ in repo.read_conversion_types(conn)),
        rates=read_rate_table(conn),
        offers=offers,
        ignored_status_code=int(settings.get("ignored_answer_status") or 200),
        s2s_campaigns=frozenset(
            conn.execute(select(t.campaign_postbacks.c.campaign_id).distinct()).scalars()
        ),
        s2s_sources=frozenset(
            conn.execute(
                select(ts.id).where(ts.postback_url.is_not(None), ts.postback_url != "")
            ).scalars()
        ),
        campaign_sources={
            row.id: row.traffic_source_id
            for row in conn.execute(select(t.campaigns.c.id, t.campaigns.c.traffic_source_id))
        },
    )


def parse_raw(raw: RawPostback, rules: PostbackRules) -> Postback | Ignored:
    """The pure half of processing; the HTTP handler runs it outside the writer thread."""
    pairs = read_pairs(raw.query.encode("utf-8"), raw.body.encode("utf-8"), raw.content_type)
    return parse_postback(pairs, aliases=rules.aliases, cookie_subid=raw.cookie_subid)


def process_postback(
    conn: Connection,
    raw: RawPostback,
    rules: PostbackRules,
    *,
    now: datetime,
    parsed: Postback | Ignored | None = None,
) -> PostbackResult:
    """Apply one postback and log it, inside the caller's transaction.

    A conversion without a `date` is dated `raw.received_at` (so a re-processed postback keeps
    the time it first arrived); `now` stamps the rows written.
    """
    if parsed is None:
        parsed = parse_raw(raw, rules)
    verdict = _apply(conn, parsed, rules, sender=raw.remote_ip, moment=raw.received_at, now=now)
    log_id = _log(conn, raw, verdict, now=now)
    return PostbackResult(
        log_id=log_id,
        outcome=verdict.outcome,
        reason=verdict.reason,
        conversion_id=verdict.conversion_id,
        silent=verdict.silent,
        answer=parsed.answer if isinstance(parsed, Postback) else None,
    )


def log_failure(conn: Connection, raw: RawPostback, reason: str, *, now: datetime) -> int:
    """Log a postback whose processing failed unexpectedly, so that it can be re-processed."""
    reason = f"internal error: {reason}"[:1000]
    return _log(conn, raw, Verdict(outcome=Outcome.IGNORED, reason=reason), now=now)


def _log(conn: Connection, raw: RawPostback, verdict: Verdict, *, now: datetime) -> int:
    return repo.insert_received(conn, log_values(raw, verdict, now=now))


def log_values(raw: RawPostback, verdict: Verdict, *, now: datetime) -> dict[str, Any]:
    """The received-postback log row of a request and what became of it."""
    return {
        "received_at": now,
        "method": raw.method[:8],
        "remote_ip": raw.remote_ip[:45] if raw.remote_ip else None,
        "query": raw.query,
        "body": raw.body,
        "content_type": raw.content_type[:200] or None,
        "headers": dict(raw.headers),
        "subid": verdict.subid[:_LOG_SUBID_CHARS] or None,
        "outcome": verdict.outcome.value,
        "reason": verdict.reason,
        "conversion_id": verdict.conversion_id,
    }


def _apply(
    conn: Connection,
    parsed: Postback | Ignored,
    rules: PostbackRules,
    *,
    sender: str | None,
    moment: datetime,
    now: datetime,
) -> Verdict:
    """`sender` is the request's address; None (an import) is not checked against allowlists."""
    if isinstance(parsed, Ignored):
        return Verdict(outcome=Outcome.IGNORED, reason=parsed.reason, subid=parsed.subid)
    subid = parsed.subid
    click = repo.find_click(conn, subid)
    if click is None:
        return Verdict(outcome=Outcome.IGNORED, reason=f"subid not found: {subid}", subid=subid)
    judged = judge(parsed, click, rules_for(conn, click, rules), sender=sender)
    if isinstance(judged, Verdict):
        return judged
    for _ in range(_CONFLICT_ROUNDS):
        existing = repo.find_conversion(conn, subid, parsed.tid)
        decision = decide(
            judged,
            existing.state if existing else None,
            moment=moment,
            has_sale=lambda: repo.has_sale(conn, subid, list(SALE_TYPES)),
        )
        if isinstance(decision, Stale | Duplicate):
            return refusal(judged, decision, existing.id if existing else None)
        with cubes.tracked(conn, (subid,)):
            if isinstance(decision, Update):
                assert existing is not None
                conversion_id = existing.id
                repo.update_conversion(conn, existing.id, decision.state, now)
                outcome = Outcome.UPDATED
            else:
                inserted = repo.insert_conversion(
                    conn, click=click, tid=parsed.tid, state=decision.state, now=now
                )
                if inserted is None:
                    continue  # a concurrent twin won the insert: read it and decide again
                conversion_id = inserted
                outcome = Outcome.ACCEPTED
            repo.overwrite_click_fields(conn, subid, parsed.click_fields, parsed.cost)
        queue_deliveries(conn, conversion_id=conversion_id, now=now)
        return Verdict(
            outcome=outcome, reason=judged.notes, subid=subid, conversion_id=conversion_id
        )
    raise RuntimeError(f"conversion {subid}/{parsed.tid} kept conflicting")


def rules_for(conn: Connection, click: repo.ClickRef, rules: PostbackRules) -> PostbackRules:
    """`rules`, or fresh ones when the click's offer is newer than them (created since)."""
    if click.offer_id is not None and click.offer_id not in rules.offers:
        return load_rules(conn)
    return rules


def judge(
    parsed: Postback, click: repo.ClickRef, rules: PostbackRules, *, sender: str | None
) -> Judged | Verdict:
    """Check a postback for an existing click: sender allowlist, status, payout currency."""
    subid = parsed.subid
    offer = rules.offers.get(click.offer_id) if click.offer_id is not None else None
    network = offer.affiliate_network_id if offer else None
    allowed = rules.network_allowed_ips.get(network, ()) if network is not None else ()
    if sender is not None and not is_sender_allowed(sender, allowed):
        return Verdict(outcome=Outcome.IGNORED, reason=f"sender not allowed: {sender}", subid=subid)
    saved = [rules.network_trainings.get(network, {})] if network is not None else []
    kind = resolve_status(
        parsed.status,
        ignore=parsed.ignore_statuses,
        url_trainings=parsed.trainings,
        saved_trainings=[*saved, rules.global_trainings],
        custom_types=rules.custom_types,
    )
    if isinstance(kind, StatusIgnored):
        return Verdict(outcome=Outcome.IGNORED, reason=kind.reason, subid=subid, silent=kind.silent)
    payout: Converted | None = None
    if parsed.payout is not None:
        converted = convert(
            parsed.payout,
            from_currency=parsed.currency or rules.currency,
            to_currency=rules.currency,
            rates=rules.rates,
        )
        if isinstance(converted, MoneyProblem):
            return Verdict(outcome=Outcome.IGNORED, reason=converted.reason, subid=subid)
        payout = converted
    return Judged(
        postback=parsed,
        click=click,
        incoming=Incoming(
            type=kind,
            original_status=parsed.status,
            payout=payout,
            cost=parsed.cost,
            date=parsed.date,
            params=parsed.params,
        ),
        default_payout=rules.default_payout(click.offer_id),
        upsell=offer is not None and offer.upsell,
        notes="; ".join(parsed.notes),
    )


def decide(
    judged: Judged,
    existing: ConversionState | None,
    *,
    moment: datetime,
    has_sale: Callable[[], bool],
) -> Decision:
    """The effect on the identity's conversion; `has_sale()` is asked only when it matters
    (a new sale on an upsell offer: does the click have a sale or rebill already?)."""
    return decide_conversion(
        judged.incoming,
        existing=existing,
        default_payout=judged.default_payout,
        now=moment,
        click_has_sale=(
            existing is None
            and judged.upsell
            and judged.incoming.type == ConversionType.SALE
            and has_sale()
        ),
        upsell_allowed=judged.upsell,
    )


def refusal(judged: Judged, decision: Stale | Duplicate, conversion_id: int | None) -> Verdict:
    """The verdict for a decision that writes nothing but the log row."""
    subid = judged.postback.subid
    if isinstance(decision, Stale):
        return Verdict(outcome=Outcome.IGNORED, reason=decision.reason, subid=subid)
    return Verdict(
        outcome=Outcome.DUPLICATE, reason=judged.notes, subid=subid, conversion_id=conversion_id
    )


def _default_payout(offer: OfferTerms | None, rules: PostbackRules) -> Converted:
    """The offer's payout in the tracker currency; zero when there is none or no rate for it."""
    if offer is not None:
        converted = convert(
            offer.payout,
            from_currency=offer.currency,
            to_currency=rules.currency,
            rates=rules.rates,
        )
        if isinstance(converted, Converted):
            return converted
    zero = Decimal(0)
    return Converted(
        amount=zero,
        currency=rules.currency,
        original_amount=zero,
        original_currency=rules.currency,
        rate=Decimal(1),
    )


# --- re-processing and import -------------------------------------------------------------


def reprocess(engine: Engine, log_id: int, *, now: datetime) -> PostbackResult:
    """Run an ignored postback again from the log (after its cause was fixed) and link the two."""
    with engine.begin() as conn:
        row = repo.get_received(conn, log_id)
        if row is None:
            raise NotFound("received postback", log_id)
        if row.outcome != Outcome.IGNORED or row.reprocessed_by is not None:
            raise InvalidInput("id", f"postback {log_id} is not an ignored one awaiting re-run")
        raw = RawPostback(
            received_at=row.received_at,
            method=row.method,
            query=row.query,
            body=row.body,
            content_type=row.content_type or "",
            remote_ip=row.remote_ip,
            headers=row.headers,
        )
        result = process_postback(conn, raw, load_rules(conn), now=now)
        repo.mark_reprocessed(conn, log_id, result.log_id)
        return result


@dataclass(frozen=True, slots=True, kw_only=True)
class IgnoredFilter:
    """Which ignored postbacks a bulk re-process takes: the log page's filters, and `up_to` the
    newest log id the user saw (so rows that arrived since are not taken)."""

    outcome: str | None = None
    reason: str | None = None
    subid: str | None = None
    up_to: int | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        c = t.received_postbacks.c
        # An outcome filter other than "ignored" shows no ignored row: it selects nothing.
        shown = received_conditions(outcome=self.outcome, reason=self.reason, subid=self.subid)
        return shown + ([c.id <= self.up_to] if self.up_to is not None else [])


EVERY_IGNORED = IgnoredFilter()


def count_ignored(engine: Engine, chosen: IgnoredFilter) -> tuple[int, int | None]:
    """How many ignored postbacks not re-run yet `chosen` selects, and the newest one's id."""
    with engine.connect() as conn:
        return repo.count_unreprocessed_ignored(conn, *chosen.conditions())


def reprocess_ignored(
    engine: Engine, chosen: IgnoredFilter = EVERY_IGNORED, *, now: datetime
) -> Iterator[tuple[int, PostbackResult]]:
    """Re-process the ignored postbacks not re-run yet that `chosen` selects (every one by
    default), oldest first, one transaction each."""
    with engine.connect() as conn:
        ids = repo.list_unreprocessed_ignored(conn, *chosen.conditions())
    for log_id in ids:
        yield log_id, reprocess(engine, log_id, now=now)


def import_conversions(
    engine: Engine, lines: Iterable[str], *, now: datetime, source: str = "import"
) -> Iterator[tuple[int, PostbackResult]]:
    """Keitaro's import format, `subid,payout,tid,status` per line, through the postback path.

    Blank lines, `#` comments and a header line are skipped; each line commits on its own.
    """
    with engine.connect() as conn:
        rules = load_rules(conn)
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        cells = [cell.strip() for cell in next(csv.reader(io.StringIO(text)))]
        if [cell.lower() for cell in cells] == ["subid", "payout", "tid", "status"]:
            continue
        names = ("subid", "payout", "tid", "status")
        params = dict(zip(names, cells, strict=False)) | {"from": source}
        raw = RawPostback(received_at=now, method="IMPORT", query=urlencode(params))
        with engine.begin() as conn:
            yield number, process_postback(conn, raw, rules, now=now)


MANUAL_METHOD = "MANUAL"
MANUAL_STATUSES = ("lead", "sale", "rejected")


def change_status(
    engine: Engine, conversion_id: int, status: str, *, user: str, now: datetime
) -> PostbackResult:
    """Set a conversion's status by hand (admin UI or API) as a postback would: the same rules
    (a lead after a sale is stale, S2S as the targets' statuses say), logged with method
    `MANUAL` and `from=<user>`."""
    if status not in MANUAL_STATUSES:
        raise InvalidInput("status", f"one of {', '.join(MANUAL_STATUSES)}")
    c = t.conversions.c
    with engine.begin() as conn:
        found = conn.execute(select(c.subid, c.tid).where(c.id == conversion_id)).first()
        if found is None:
            raise NotFound("conversion", conversion_id)
        # The training in the query makes the word mean its type whatever the saved trainings say.
        params = {"subid": found.subid, "status": status, f"{status}_status": status}
        params |= {"tid": found.tid} if found.tid else {}
        raw = RawPostback(
            received_at=now, method=MANUAL_METHOD, query=urlencode(params | {"from": user})
        )
        return process_postback(conn, raw, load_rules(conn), now=now)


# --- conversion types ---------------------------------------------------------------------


def add_conversion_type(engine: Engine, name: str, *, label: str = "", now: datetime) -> str:
    """Create a custom conversion type; `<name>_status` then trains it in postback URLs."""
    normalized = check_type_name(name)
    with engine.begin() as conn:
        if not repo.insert_conversion_type(
            conn, name=normalized, label=label.strip()[:200] or normalized, now=now
        ):
            raise Conflict("conversion type", normalized)
        bump_config_version(conn)
    return normalized


def list_conversion_types(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        custom = repo.read_conversion_types(conn)
    built_in = [
        {"name": str(kind), "label": str(kind).title(), "built_in": True} for kind in ConversionType
    ]
    return built_in + [{"name": n, "label": label, "built_in": False} for n, label in custom]
