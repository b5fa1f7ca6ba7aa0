"""The S2S outbox: queue, claim with a lease, record attempts, resend, and target health.

A claim is one `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING`: on
PostgreSQL any number of dispatchers share the queue; SQLite serialises writers, so the same
statement is a single-writer claim there. A crashed dispatcher's claims expire with the lease.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Select

from clickloop.domain.deliveries import (
    REFUSED_REASON,
    Attempt,
    Delivered,
    DeliveryState,
    DisableTarget,
    GiveUp,
    Retry,
    TargetKind,
    host_key,
)
from clickloop.storage import sqlite_rows
from clickloop.storage import tables as t

DEFAULT_LEASE = timedelta(seconds=60)
DEFAULT_DISABLE_AFTER = timedelta(days=3)

_d = t.deliveries
_KINDS = {str(kind): kind for kind in TargetKind}


@dataclass(frozen=True, slots=True, kw_only=True)
class NewDelivery:
    """A rendered request to queue."""

    conversion_id: int
    target_kind: TargetKind
    target_id: int
    method: str
    url: str
    body: str | None
    content_type: str | None
    headers: dict[str, str] = field(default_factory=dict)  # rendered request headers
    response_must_contain: str | None
    dedup_key: str
    warnings: tuple[str, ...]
    enabled: bool  # False: the target is disabled; queued as `disabled`, resumed on re-enable


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimedDelivery:
    """A delivery this dispatcher holds the lease on."""

    id: int
    target_kind: TargetKind
    target_id: int
    method: str
    url: str
    host: str
    body: str | None
    content_type: str | None
    headers: dict[str, str]
    response_must_contain: str | None
    attempts: int  # made before this claim


@dataclass(frozen=True, slots=True, kw_only=True)
class DisabledTarget:
    """A target switched off by the outbox (410, or failing too long), for the alert."""

    kind: TargetKind
    id: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _TargetColumns:
    table: Any
    enabled: Any
    reason: Any


def _target(kind: TargetKind) -> _TargetColumns:
    if kind is TargetKind.TRAFFIC_SOURCE:
        ts = t.traffic_sources
        return _TargetColumns(
            table=ts, enabled=ts.c.postback_enabled, reason=ts.c.postback_disabled_reason
        )
    cp = t.campaign_postbacks
    return _TargetColumns(table=cp, enabled=cp.c.enabled, reason=cp.c.disabled_reason)


def insert_deliveries(conn: Connection, rows: Sequence[NewDelivery], *, now: datetime) -> int:
    """Queue `rows`, skipping any whose dedup key is already queued; return how many were new."""
    if not rows:
        return 0
    values = [
        {
            "conversion_id": r.conversion_id,
            "target_kind": str(r.target_kind),
            "target_id": r.target_id,
            "method": r.method,
            "url": r.url,
            "host": host_key(r.url),
            "body": r.body,
            "content_type": r.content_type,
            "headers": r.headers or None,
            "response_must_contain": r.response_must_contain,
            "dedup_key": r.dedup_key,
            "warnings": list(r.warnings),
            "state": str(DeliveryState.QUEUED if r.enabled else DeliveryState.DISABLED),
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for r in rows
    ]
    if conn.dialect.name == "sqlite":
        # Multi-row statements on the driver's cursor; a row whose dedup key is queued already
        # is skipped and not counted.
        columns = tuple(values[0])
        return sum(
            inserted
            for _, inserted, _ in sqlite_rows.insert_rows(
                conn, _d, columns, values, ignore_conflicts=True
            )
        )
    stmt = _insert_ignoring_duplicates(conn.dialect.name)
    if len(values) <= 4:  # a conversion's few targets: plain executes beat the batching machinery
        return sum(conn.execute(stmt, value).first() is not None for value in values)
    # executemany with RETURNING ("insertmanyvalues"): batched, and returns only the new rows.
    return len(conn.execute(stmt, values).all())


@functools.cache
def _insert_ignoring_duplicates(dialect: str) -> Any:
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(_d)
    elif dialect == "sqlite":
        stmt = sqlite.insert(_d)
    else:  # pragma: no cover - only the two supported backends
        raise NotImplementedError(dialect)
    return stmt.on_conflict_do_nothing(index_elements=["dedup_key"]).returning(_d.c.id)


def any_due(conn: Connection, *, now: datetime) -> bool:
    """Whether some queued delivery is due and unleased: a plain read, so that an idle
    dispatcher's poll costs no write transaction (on SQLite, no turn at the write lock)."""
    return conn.execute(select(_d.c.id).where(*_due(now)).limit(1)).first() is not None


def _due(now: datetime) -> tuple[Any, ...]:
    """Queued, its time come, and not leased to a live dispatcher."""
    return (
        _d.c.state == str(DeliveryState.QUEUED),
        _d.c.next_attempt_at <= now,
        or_(_d.c.claimed_until.is_(None), _d.c.claimed_until < now),
    )


def claim_due(
    conn: Connection,
    *,
    worker: str,
    now: datetime,
    limit: int,
    lease: timedelta = DEFAULT_LEASE,
    exclude_hosts: Collection[str] = (),
) -> list[ClaimedDelivery]:
    """Lease up to `limit` due deliveries to `worker`: first attempts, then retries.

    `exclude_hosts` are hosts the caller has no room for (a slow or hung one holding its fill):
    their rows stay in the queue for other dispatchers or later. Call in its own short
    transaction; the lease (not the transaction) guards the send.
    """
    claimed: list[ClaimedDelivery] = []
    for first in (True, False):
        if len(claimed) >= limit:
            break
        claimed.extend(
            _claim(
                conn,
                worker=worker,
                now=now,
                limit=limit - len(claimed),
                lease=lease,
                first=first,
                exclude_hosts=exclude_hosts,
            )
        )
    return claimed


def _claim(
    conn: Connection,
    *,
    worker: str,
    now: datetime,
    limit: int,
    lease: timedelta,
    first: bool,
    exclude_hosts: Collection[str],
) -> list[ClaimedDelivery]:
    due: Select[Any] = (
        select(_d.c.id)
        .where(*_due(now), (_d.c.attempts == 0) if first else (_d.c.attempts > 0))
        .order_by(_d.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if exclude_hosts:
        due = due.where(_d.c.host.not_in(list(exclude_hosts)))
    stmt = (
        update(_d)
        .where(_d.c.id.in_(due.scalar_subquery()))
        .values(claimed_until=now + lease, claimed_by=worker)
        .returning(
            _d.c.id,
            _d.c.target_kind,
            _d.c.target_id,
            _d.c.method,
            _d.c.url,
            _d.c.host,
            _d.c.body,
            _d.c.content_type,
            _d.c.headers,
            _d.c.response_must_contain,
            _d.c.attempts,
        )
    )
    # Positional unpacking and a dict lookup: this runs for every delivery sent.
    claimed = [
        ClaimedDelivery(
            id=id_,
            target_kind=_KINDS[kind],
            target_id=target_id,
            method=method,
            url=url,
            host=host,
            body=body,
            content_type=content_type,
            headers=headers or {},
            response_must_contain=must_contain,
            attempts=attempts,
        )
        for (
            id_,
            kind,
            target_id,
            method,
            url,
            host,
            body,
            content_type,
            headers,
            must_contain,
            attempts,
        ) in conn.execute(stmt)
    ]
    claimed.sort(key=lambda c: c.id)
    return claimed


def release_claims(
    conn: Connection, *, worker: str, ids: Iterable[int], until: datetime | None = None
) -> None:
    """Give back leases not used: at shutdown, or (with `until`, when they fall due again) for
    deliveries to a host that already has its fill in flight, so that a slow host's backlog
    holds neither leases nor the dispatcher's budget.
    """
    id_list = list(ids)
    if not id_list:
        return
    values: dict[str, Any] = {"claimed_until": None, "claimed_by": None}
    if until is not None:
        values["next_attempt_at"] = until
    conn.execute(update(_d).where(_d.c.id.in_(id_list), _d.c.claimed_by == worker).values(values))


def record_attempts(
    conn: Connection,
    results: Sequence[tuple[ClaimedDelivery, Attempt]],
    *,
    worker: str,
    now: datetime,
    disable_after: timedelta = DEFAULT_DISABLE_AFTER,
) -> list[DisabledTarget]:
    """Log each attempt, move each delivery on by its outcome, and update target health.

    Returns the targets this batch disabled. A delivery whose lease was taken over meanwhile
    keeps its attempt row (the request did go out) but its state belongs to the new holder.
    """
    if not results:
        return []
    conn.execute(
        insert(t.delivery_attempts),
        [
            {
                "delivery_id": claim.id,
                "started_at": a.started_at,
                "url": a.url,
                "status_code": a.status_code,
                "latency_ms": a.latency_ms,
                "response": a.response,
                "error_kind": str(a.error_kind) if a.error_kind else None,
                "error": a.error,
            }
            for claim, a in results
        ],
    )
    # Delivered is the common case and needs no per-row values: one statement for all of them.
    delivered = [claim.id for claim, a in results if isinstance(a.outcome, Delivered)]
    if delivered:
        conn.execute(
            update(_d)
            .where(_d.c.id.in_(delivered), _d.c.claimed_by == worker)
            .values(
                state=str(DeliveryState.DELIVERED),
                attempts=_d.c.attempts + 1,
                next_attempt_at=now,
                claimed_until=None,
                claimed_by=None,
                last_error=None,
                delivered_at=now,
            )
        )
    others = [
        _state_change(claim, a, now) for claim, a in results if not isinstance(a.outcome, Delivered)
    ]
    if others:
        conn.execute(
            update(_d)
            .where(_d.c.id == bindparam("b_id"), _d.c.claimed_by == worker)
            .values(
                state=bindparam("b_state"),
                attempts=_d.c.attempts + 1,
                next_attempt_at=bindparam("b_next"),
                claimed_until=None,
                claimed_by=None,
                last_error=bindparam("b_error"),
            ),
            others,
        )
    return _update_health(conn, results, now=now, disable_after=disable_after)


def _state_change(claim: ClaimedDelivery, attempt: Attempt, now: datetime) -> dict[str, Any]:
    outcome = attempt.outcome
    if isinstance(outcome, Retry):
        return {
            "b_id": claim.id,
            "b_state": str(DeliveryState.QUEUED),
            "b_next": outcome.at,
            "b_error": outcome.reason,
        }
    state = DeliveryState.DISABLED if isinstance(outcome, DisableTarget) else DeliveryState.FAILED
    reason = outcome.reason if isinstance(outcome, GiveUp | DisableTarget) else None
    return {"b_id": claim.id, "b_state": str(state), "b_next": now, "b_error": reason}


def _update_health(
    conn: Connection,
    results: Sequence[tuple[ClaimedDelivery, Attempt]],
    *,
    now: datetime,
    disable_after: timedelta,
) -> list[DisabledTarget]:
    succeeded: set[tuple[TargetKind, int]] = set()
    failed: set[tuple[TargetKind, int]] = set()
    gone: dict[tuple[TargetKind, int], str] = {}
    for claim, attempt in results:
        key = (claim.target_kind, claim.target_id)
        if isinstance(attempt.outcome, Delivered):
            succeeded.add(key)
        else:
            failed.add(key)
        if isinstance(attempt.outcome, DisableTarget):
            gone[key] = attempt.outcome.reason
    for kind, target_id in succeeded:
        cols = _target(kind)
        conn.execute(
            update(cols.table)
            .where(cols.table.c.id == target_id)
            .values(last_success_at=now, failing_since=None)
        )
    disabled: list[DisabledTarget] = []
    for key in sorted(failed - succeeded):
        kind, target_id = key
        cols = _target(kind)
        table = cols.table
        conn.execute(
            update(table)
            .where(table.c.id == target_id, table.c.failing_since.is_(None))
            .values(failing_since=now)
        )
        found = conn.execute(
            select(table.c.failing_since, cols.enabled).where(table.c.id == target_id)
        ).first()
        if found is None:
            continue
        since, enabled = found
        reason = gone.get(key)
        if reason is None and enabled:
            if since is None or now - since < disable_after:
                continue
            reason = f"no successful delivery since {since.isoformat(timespec='seconds')}"
        # For a target already off, this parks retries that were in flight when it went off.
        if disable_target(conn, kind=kind, target_id=target_id, reason=reason or ""):
            disabled.append(DisabledTarget(kind=kind, id=target_id, reason=reason or ""))
    return disabled


def disable_target(conn: Connection, *, kind: TargetKind, target_id: int, reason: str) -> bool:
    """Switch a target off and park its queued deliveries; False if it was already off."""
    cols = _target(kind)
    changed = conn.execute(
        update(cols.table)
        .where(cols.table.c.id == target_id, cols.enabled.is_(True))
        .values({cols.enabled: False, cols.reason: reason})
    ).rowcount
    conn.execute(
        update(_d)
        .where(
            _d.c.target_kind == str(kind),
            _d.c.target_id == target_id,
            _d.c.state == str(DeliveryState.QUEUED),
        )
        .values(state=str(DeliveryState.DISABLED))
    )
    return bool(changed)


def enable_target(conn: Connection, *, kind: TargetKind, target_id: int, now: datetime) -> int:
    """Switch a target back on and resume its parked deliveries now; return how many."""
    cols = _target(kind)
    conn.execute(
        update(cols.table)
        .where(cols.table.c.id == target_id)
        .values({cols.enabled: True, cols.reason: None, cols.table.c.failing_since: None})
    )
    return resume_enabled_targets(conn, now=now)


def resume_enabled_targets(conn: Connection, *, now: datetime) -> int:
    """Requeue parked deliveries whose target is enabled again (by any path, API or SQL)."""
    resumed = 0
    for kind in TargetKind:
        cols = _target(kind)
        enabled_ids = select(cols.table.c.id).where(cols.enabled.is_(True))
        resumed += conn.execute(
            update(_d)
            .where(
                _d.c.state == str(DeliveryState.DISABLED),
                _d.c.target_kind == str(kind),
                _d.c.target_id.in_(enabled_ids.scalar_subquery()),
            )
            .values(state=str(DeliveryState.QUEUED), next_attempt_at=now)
        ).rowcount
    return resumed


def retry_refused_now(conn: Connection, *, now: datetime) -> int:
    """Make deliveries waiting after an address refusal due now; return how many.

    Called when the allowed networks change: the refusal may be lifted, so they need not wait
    for their next rung of the retry ladder.
    """
    return conn.execute(
        update(_d)
        .where(
            _d.c.state == str(DeliveryState.QUEUED),
            _d.c.last_error == REFUSED_REASON,
            _d.c.next_attempt_at > now,
        )
        .values(next_attempt_at=now)
    ).rowcount


def resend(conn: Connection, *, delivery_ids: Iterable[int], now: datetime) -> list[int]:
    """Queue deliveries again now, with a fresh retry schedule; return the ids queued."""
    ids = list(delivery_ids)
    if not ids:
        return []
    found = conn.execute(
        update(_d)
        .where(_d.c.id.in_(ids), _not_in_flight(now))
        .values(_requeue_values(now))
        .returning(_d.c.id)
    )
    return sorted(found.scalars())


@dataclass(frozen=True, slots=True, kw_only=True)
class Resendable:
    """A delivery locked for a resend that renders it again."""

    id: int
    conversion_id: int
    target_kind: TargetKind
    target_id: int
    dedup_key: str
    state: DeliveryState


def lock_resendable(
    conn: Connection,
    *,
    now: datetime,
    ids: Collection[int] | None = None,
    state: DeliveryState | None = None,
    since: datetime | None = None,
) -> list[Resendable]:
    """The deliveries (by id, or in a state created at or after `since`) that no dispatcher is
    sending, locked until the caller's transaction ends so that none claims them meanwhile."""
    query = select(
        _d.c.id, _d.c.conversion_id, _d.c.target_kind, _d.c.target_id, _d.c.dedup_key, _d.c.state
    ).where(_not_in_flight(now))
    if ids is not None:
        query = query.where(_d.c.id.in_(list(ids)))
    if state is not None:
        query = query.where(_d.c.state == str(state))
    if since is not None:
        query = query.where(_d.c.created_at >= since)
    return [
        Resendable(
            id=row.id,
            conversion_id=row.conversion_id,
            target_kind=_KINDS[row.target_kind],
            target_id=row.target_id,
            dedup_key=row.dedup_key,
            state=DeliveryState(row.state),
        )
        for row in conn.execute(query.order_by(_d.c.id).with_for_update())
    ]


def queue_again(conn: Connection, row: NewDelivery, *, now: datetime) -> int | None:
    """Queue a rendered request, or (dedup key) requeue the delivery identical to it; return its
    id, or None when that delivery is being sent right now."""
    inserted = insert_deliveries(conn, [row], now=now)
    delivery_id = conn.execute(select(_d.c.id).where(_d.c.dedup_key == row.dedup_key)).scalar_one()
    if inserted:  # new: already queued with a fresh schedule
        return int(delivery_id)
    requeued = resend(conn, delivery_ids=[delivery_id], now=now)
    return requeued[0] if requeued else None


def supersede(conn: Connection, *, delivery_id: int, by: int) -> None:
    """Retire a delivery rendered again as `by`: it is never sent again (nor retried)."""
    conn.execute(
        update(_d)
        .where(_d.c.id == delivery_id)
        .values(
            state=str(DeliveryState.SUPERSEDED),
            last_error=f"superseded by delivery {by}",
            claimed_until=None,
            claimed_by=None,
        )
    )


def resend_failed(conn: Connection, *, now: datetime, since: datetime | None = None) -> int:
    """Queue every failed delivery (created at or after `since`) again; return how many."""
    conditions = [_d.c.state == str(DeliveryState.FAILED)]
    if since is not None:
        conditions.append(_d.c.created_at >= since)
    return conn.execute(update(_d).where(*conditions).values(_requeue_values(now))).rowcount


def _not_in_flight(now: datetime) -> Any:
    # Requeueing a delivery another dispatcher is sending now would let it be sent twice at once.
    return or_(_d.c.claimed_until.is_(None), _d.c.claimed_until < now)


def _requeue_values(now: datetime) -> dict[str, Any]:
    # attempts counts the current round: a resend starts the schedule over (and ranks as new).
    return {
        "state": str(DeliveryState.QUEUED),
        "attempts": 0,
        "next_attempt_at": now,
        "claimed_until": None,
        "claimed_by": None,
    }


def count_by_state(conn: Connection) -> dict[str, int]:
    """How many deliveries are in each state (for metrics and the CLI)."""
    rows = conn.execute(select(_d.c.state, func.count()).group_by(_d.c.state))
    return {state: n for state, n in rows}


def queue_depth(conn: Connection) -> dict[str, int]:
    """Deliveries waiting to be sent: `queued` (never tried) and `retrying` (tried, failed,
    due again later); read from the state index, not the whole table."""
    retrying = (_d.c.attempts > 0).label("retrying")
    rows = conn.execute(
        select(retrying, func.count())
        .where(_d.c.state == str(DeliveryState.QUEUED))
        .group_by(retrying)
    )
    counts = {bool(tried): n for tried, n in rows}
    return {"queued": counts.get(False, 0), "retrying": counts.get(True, 0)}


def list_disabled_targets(conn: Connection) -> list[DisabledTarget]:
    """Targets switched off with a reason: the alert the UI shows."""
    found: list[DisabledTarget] = []
    for kind in TargetKind:
        cols = _target(kind)
        query = select(cols.table.c.id, cols.reason).where(
            and_(cols.enabled.is_(False), cols.reason.is_not(None))
        )
        found.extend(DisabledTarget(kind=kind, id=i, reason=r) for i, r in conn.execute(query))
    return found
