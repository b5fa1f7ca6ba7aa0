"""Many postbacks in one writer transaction, applied together: the batch's clicks and conversions
are read with one query each and its changes written with a few statements, with the outcomes
that applying them one by one (`process_postback`) gives; that remains the fallback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from clickloop.domain.conversions import ConversionState, Duplicate, Stale, Update
from clickloop.domain.postbacks import Ignored, Outcome, Postback
from clickloop.domain.report_facts import Conversion
from clickloop.errors import StorageUnavailable
from clickloop.services.outbox import queue_deliveries_for
from clickloop.services.postbacks import (
    SALE_TYPES,
    PostbackResult,
    PostbackRules,
    RawPostback,
    Verdict,
    decide,
    judge,
    load_rules,
    log_failure,
    log_values,
    process_postback,
    refusal,
)
from clickloop.storage import conversion_batches as batches
from clickloop.storage import conversions as repo
from clickloop.storage import report_cubes as cubes
from clickloop.storage import tables as t

log = logging.getLogger(__name__)

# The conversion fields a delivery's macros read from the state being sent.
_SENT_FIELDS = ("type", "original_status", "payout", "currency", "cost", "converted_at")
_CONFIG_VERSION = select(t.settings.c.value).where(t.settings.c.key == "config_version")


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingPostback:
    """A received postback waiting for the writer, parsed already (outside the writer thread)."""

    raw: RawPostback
    rules: PostbackRules
    parsed: Postback | Ignored


class _Conflict(Exception):
    """A concurrent twin took an identity that this batch was inserting (PostgreSQL)."""


def process_postbacks(
    conn: Connection, batch: Sequence[PendingPostback], *, now: datetime
) -> list[PostbackResult]:
    """Apply many postbacks in one transaction.

    They are applied together; should that fail for any reason but the database's (a concurrent
    twin, an unexpected error), it is undone and each postback is applied alone in its own
    savepoint, where one that fails is rolled back alone and logged as ignored ("internal
    error: …", re-processable). When the database itself fails (locked, disk full, connection
    lost) StorageUnavailable aborts the whole batch.
    """
    if not batch:
        return []
    try:
        # Outside the savepoint, so that the clicks stay locked (in subid order, PostgreSQL)
        # for the one-by-one fallback too: see conversion_batches.find_clicks.
        postbacks = [item.parsed for item in batch if isinstance(item.parsed, Postback)]
        fields = cubes.fact_fields(conn)
        clicks = batches.find_clicks(conn, {p.subid for p in postbacks}, fields)
        # The units whose click a postback changes (its fields or cost) are tracked whole; the
        # rest only move conversions, which the batch hands to the cubes itself (_Batch.moved).
        whole = {p.subid for p in postbacks if p.click_fields or p.cost is not None} & set(clicks)
        with repo.savepoint(conn), cubes.tracked(conn, whole):
            version = int(conn.execute(_CONFIG_VERSION).scalar() or 0)
            done = _Batch(conn, config_version=version, now=now, whole=whole)
            results = done.apply(batch, clicks)
            cubes.add_conversion_changes(conn, done.moved, fields)
            return results
    except repo.UNAVAILABLE as exc:
        raise StorageUnavailable(str(exc).splitlines()[0]) from exc
    except _Conflict:
        pass
    except Exception:
        log.exception("applying postbacks together failed; applying them one by one")
    return _one_by_one(conn, batch, now=now)


@dataclass(slots=True)
class _Tracked:
    """A conversion as this batch left it; `id` is None until its insert is flushed."""

    id: int | None
    state: ConversionState


@dataclass(frozen=True, slots=True)
class _NewConversion:
    click: repo.ClickRef
    tid: str
    tracked: _Tracked


class _Batch:
    """Decides every postback against the batch's view of the conversions and holds the
    writes back until something must read the database (the outbox, the upsell check)."""

    def __init__(
        self, conn: Connection, *, config_version: int, now: datetime, whole: set[str]
    ) -> None:
        """`whole`: the subids whose units the cubes track whole (their clicks change)."""
        self._conn = conn
        self._whole = whole
        # Conversions that moved in the other units: (click fields, before, after), for the cubes.
        self.moved: list[tuple[Mapping[str, Any], Conversion | None, Conversion]] = []
        self._config_version = config_version
        self._now = now
        self._known: dict[tuple[str, str], _Tracked] = {}
        self._inserts: list[_NewConversion] = []
        self._updates: dict[int, _Tracked] = {}
        self._click_changes: list[Postback] = []
        self._deliveries: list[tuple[_Tracked, ConversionState]] = []  # changes to send, in order
        self._fresh_rules: PostbackRules | None = None

    def apply(
        self, batch: Sequence[PendingPostback], clicks: dict[str, repo.ClickRef]
    ) -> list[PostbackResult]:
        """`clicks`: the batch's clicks, by subid."""
        postbacks = [item.parsed for item in batch if isinstance(item.parsed, Postback)]
        keys = {(p.subid, p.tid) for p in postbacks if p.subid in clicks}
        for key, stored in batches.find_conversions(self._conn, keys).items():
            self._known[key] = _Tracked(id=stored.id, state=stored.state)
        decided = [self._apply(item, clicks) for item in batch]
        self._queue_deliveries()
        rows = []
        for item, (verdict, tracked) in zip(batch, decided, strict=True):
            row = log_values(item.raw, verdict, now=self._now)
            if tracked is not None:  # its id is known now that the inserts are flushed
                row["conversion_id"] = tracked.id
            rows.append(row)
        log_ids = batches.insert_received(self._conn, rows)
        return [
            _result(log_id, verdict, item.parsed, row["conversion_id"])
            for log_id, (verdict, _), item, row in zip(log_ids, decided, batch, rows, strict=True)
        ]

    def _apply(
        self, item: PendingPostback, clicks: dict[str, repo.ClickRef]
    ) -> tuple[Verdict, _Tracked | None]:
        parsed = item.parsed
        if isinstance(parsed, Ignored):
            return Verdict(outcome=Outcome.IGNORED, reason=parsed.reason, subid=parsed.subid), None
        subid = parsed.subid
        click = clicks.get(subid)
        if click is None:
            reason = f"subid not found: {subid}"
            return Verdict(outcome=Outcome.IGNORED, reason=reason, subid=subid), None
        rules = self._rules_for(click, item.rules)
        judged = judge(parsed, click, rules, sender=item.raw.remote_ip)
        if isinstance(judged, Verdict):
            return judged, None
        key = (subid, parsed.tid)
        tracked = self._known.get(key)
        decision = decide(
            judged,
            tracked.state if tracked else None,
            moment=item.raw.received_at,
            has_sale=lambda: self._has_sale(subid),
        )
        if isinstance(decision, Stale):
            return refusal(judged, decision, None), None
        if isinstance(decision, Duplicate):
            return refusal(judged, decision, None), tracked
        before = None
        if isinstance(decision, Update):
            assert tracked is not None
            before = tracked.state
            tracked.state = decision.state
            if tracked.id is not None:  # else its pending insert stores the new state
                self._updates[tracked.id] = tracked
            outcome = Outcome.UPDATED
        else:
            tracked = self._known[key] = _Tracked(id=None, state=decision.state)
            self._inserts.append(_NewConversion(click=click, tid=parsed.tid, tracked=tracked))
            outcome = Outcome.ACCEPTED
        if subid not in self._whole:
            was = None if before is None else _conversion(before)
            self.moved.append((click.fields, was, _conversion(decision.state)))
        if parsed.click_fields or parsed.cost is not None:
            # Deliveries render the click as it is when they are queued: earlier changes go out
            # before this postback changes the click.
            self._queue_deliveries()
            self._click_changes.append(parsed)
        # The snapshot's S2S targets are exact only at the configuration version it was built
        # from; otherwise the outbox looks for targets itself.
        if rules.version != self._config_version or rules.may_have_s2s(click):
            self._deliveries.append((tracked, decision.state))
        return Verdict(outcome=outcome, reason=judged.notes, subid=subid), tracked

    def _rules_for(self, click: repo.ClickRef, rules: PostbackRules) -> PostbackRules:
        """`rules`, or fresh ones (read once per batch) when the click's offer is newer."""
        if click.offer_id is None or click.offer_id in rules.offers:
            return rules
        if self._fresh_rules is None or click.offer_id not in self._fresh_rules.offers:
            self._fresh_rules = load_rules(self._conn)
        return self._fresh_rules

    def _queue_deliveries(self) -> None:
        """Flush, then queue the S2S deliveries of the changes so far, each state as it was."""
        self._flush()
        if self._deliveries:
            changes = []
            for tracked, state in self._deliveries:
                assert tracked.id is not None
                changes.append((tracked.id, {name: getattr(state, name) for name in _SENT_FIELDS}))
            queue_deliveries_for(self._conn, changes, now=self._now)
            self._deliveries = []

    def _has_sale(self, subid: str) -> bool:
        self._flush()
        return repo.has_sale(self._conn, subid, list(SALE_TYPES))

    def _flush(self) -> None:
        """Write what was decided so far, so that the database shows it."""
        if self._inserts:
            rows = [
                batches.NewConversion(click=new.click, tid=new.tid, state=new.tracked.state)
                for new in self._inserts
            ]
            ids = batches.insert_conversions(self._conn, rows, now=self._now)
            for new in self._inserts:
                conversion_id = ids.get((new.click.subid, new.tid))
                if conversion_id is None:
                    raise _Conflict(f"{new.click.subid}/{new.tid}")
                new.tracked.id = conversion_id
            self._inserts = []
        if self._updates:
            states = {conversion_id: tr.state for conversion_id, tr in self._updates.items()}
            batches.update_conversions(self._conn, states, now=self._now)
            self._updates = {}
        for parsed in self._click_changes:
            repo.overwrite_click_fields(self._conn, parsed.subid, parsed.click_fields, parsed.cost)
        self._click_changes = []


def _conversion(state: ConversionState) -> Conversion:
    return state.type, state.payout, state.converted_at


def _one_by_one(
    conn: Connection, batch: Sequence[PendingPostback], *, now: datetime
) -> list[PostbackResult]:
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


def _result(
    log_id: int, verdict: Verdict, parsed: Postback | Ignored, conversion_id: int | None
) -> PostbackResult:
    return PostbackResult(
        log_id=log_id,
        outcome=verdict.outcome,
        reason=verdict.reason,
        conversion_id=conversion_id,
        silent=verdict.silent,
        answer=parsed.answer if isinstance(parsed, Postback) else None,
    )
