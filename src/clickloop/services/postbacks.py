"""The postback use case: judge a received postback, apply it, log it, queue its S2S, in one
transaction. The endpoint, re-processing from the log and `import conversions` all come here.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from clickloop.domain.conversions import (
    Create,
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
from clickloop.errors import Conflict, InvalidInput, NotFound, StorageUnavailable
from clickloop.services.entities import bump_config_version, read_settings
from clickloop.services.outbox import queue_deliveries
from clickloop.services.rates import read_rate_table
from clickloop.storage import conversions as repo
from clickloop.storage import tables as t

log = logging.getLogger(__name__)

# A subid longer than the log column is cut there (it cannot match a click anyway).
_LOG_SUBID_CHARS = 200
# A concurrent twin can take the identity between our read and our insert; re-read and decide
# again. Twice is enough: after a conflict the row exists and the next round is an update.
_CONFLICT_ROUNDS = 3
COOKIE_HEADER = "cookie:_subid"


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
class _Verdict:
    outcome: Outcome
    reason: str = ""
    subid: str = ""
    conversion_id: int | None = None
    silent: bool = False


def load_rules(conn: Connection) -> PostbackRules:
    settings = read_settings(conn)
    n = t.affiliate_networks.c
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


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingPostback:
    """A received postback waiting for the writer, parsed already (outside the writer thread)."""

    raw: RawPostback
    rules: PostbackRules
    parsed: Postback | Ignored


def process_postbacks(
    conn: Connection, batch: Sequence[PendingPostback], *, now: datetime
) -> list[PostbackResult]:
    """Apply many postbacks in one transaction, each in its own savepoint.

    A postback whose processing fails for an unexpected reason is rolled back alone and logged
    as ignored ("internal error: …", re-processable). When the database itself fails
    (locked, disk full, connection lost) StorageUnavailable aborts the whole batch.
    """
    results: list[PostbackResult] = []
    for item in batch:
        try:
            with repo.savepoint(conn):
                result = process_postback(conn, item.raw, item.rules, now=now, parsed=item.parsed)
        except repo.UNAVAILABLE as exc:
            raise StorageUnavailable(str(exc).splitlines()[0]) from exc
        except Exception as exc:
            log.exception("postback processing failed")
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            reason = f"{type(exc).__name__}: {first_line}"
            log_id = log_failure(conn, item.raw, reason, now=now)
            result = PostbackResult(log_id=log_id, outcome=Outcome.IGNORED, reason=reason)
        results.append(result)
    return results


def log_failure(conn: Connection, raw: RawPostback, reason: str, *, now: datetime) -> int:
    """Log a postback whose processing failed unexpectedly, so that it can be re-processed."""
    reason = f"internal error: {reason}"[:1000]
    return _log(conn, raw, _Verdict(outcome=Outcome.IGNORED, reason=reason), now=now)


def _log(conn: Connection, raw: RawPostback, verdict: _Verdict, *, now: datetime) -> int:
    return repo.insert_received(
        conn,
        {
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
        },
    )


def _apply(
    conn: Connection,
    parsed: Postback | Ignored,
    rules: PostbackRules,
    *,
    sender: str | None,
    moment: datetime,
    now: datetime,
) -> _Verdict:
    """`sender` is the request's address; None (an import) is not checked against allowlists."""
    if isinstance(parsed, Ignored):
        return _Verdict(outcome=Outcome.IGNORED, reason=parsed.reason, subid=parsed.subid)
    subid = parsed.subid
    click = repo.find_click(conn, subid)
    if click is None:
        return _Verdict(outcome=Outcome.IGNORED, reason=f"subid not found: {subid}", subid=subid)
    if click.offer_id is not None and click.offer_id not in rules.offers:
        # The click's offer is newer than the cached snapshot (created within the last poll).
        rules = load_rules(conn)
    offer = rules.offers.get(click.offer_id) if click.offer_id is not None else None
    network = offer.affiliate_network_id if offer else None
    allowed = rules.network_allowed_ips.get(network, ()) if network is not None else ()
    if sender is not None and not is_sender_allowed(sender, allowed):
        return _Verdict(
            outcome=Outcome.IGNORED, reason=f"sender not allowed: {sender}", subid=subid
        )
    saved = [rules.network_trainings.get(network, {})] if network is not None else []
    kind = resolve_status(
        parsed.status,
        ignore=parsed.ignore_statuses,
        url_trainings=parsed.trainings,
        saved_trainings=[*saved, rules.global_trainings],
        custom_types=rules.custom_types,
    )
    if isinstance(kind, StatusIgnored):
        return _Verdict(
            outcome=Outcome.IGNORED, reason=kind.reason, subid=subid, silent=kind.silent
        )
    payout: Converted | None = None
    if parsed.payout is not None:
        converted = convert(
            parsed.payout,
            from_currency=parsed.currency or rules.currency,
            to_currency=rules.currency,
            rates=rules.rates,
        )
        if isinstance(converted, MoneyProblem):
            return _Verdict(outcome=Outcome.IGNORED, reason=converted.reason, subid=subid)
        payout = converted
    incoming = Incoming(
        type=kind,
        original_status=parsed.status,
        payout=payout,
        cost=parsed.cost,
        date=parsed.date,
        params=parsed.params,
    )
    notes = "; ".join(parsed.notes)
    for _ in range(_CONFLICT_ROUNDS):
        existing = repo.find_conversion(conn, subid, parsed.tid)
        upsell = offer is not None and offer.upsell
        decision = decide_conversion(
            incoming,
            existing=existing.state if existing else None,
            default_payout=_default_payout(offer, rules),
            now=moment,
            click_has_sale=(
                existing is None
                and upsell
                and kind == ConversionType.SALE
                and repo.has_sale(conn, subid, [ConversionType.SALE, ConversionType.REBILL])
            ),
            upsell_allowed=upsell,
        )
        if isinstance(decision, Stale):
            return _Verdict(outcome=Outcome.IGNORED, reason=decision.reason, subid=subid)
        if isinstance(decision, Duplicate):
            assert existing is not None
            return _Verdict(
                outcome=Outcome.DUPLICATE, reason=notes, subid=subid, conversion_id=existing.id
            )
        if isinstance(decision, Update):
            assert existing is not None
            conversion_id = existing.id
            repo.update_conversion(conn, existing.id, decision.state, now)
            outcome = Outcome.UPDATED
        else:
            assert isinstance(decision, Create)
            inserted = repo.insert_conversion(
                conn, click=click, tid=parsed.tid, state=decision.state, now=now
            )
            if inserted is None:
                continue  # a concurrent twin won the insert: read it and decide again
            conversion_id = inserted
            outcome = Outcome.ACCEPTED
        repo.overwrite_click_fields(conn, subid, parsed.click_fields, parsed.cost)
        queue_deliveries(conn, conversion_id=conversion_id, now=now)
        return _Verdict(outcome=outcome, reason=notes, subid=subid, conversion_id=conversion_id)
    raise RuntimeError(f"conversion {subid}/{parsed.tid} kept conflicting")


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


def reprocess_ignored(engine: Engine, *, now: datetime) -> Iterator[tuple[int, PostbackResult]]:
    """Re-process every ignored postback not re-run yet, oldest first, one transaction each."""
    with engine.connect() as conn:
        ids = repo.list_unreprocessed_ignored(conn)
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
