"""The sent-postback log as users act on it: send again (as stored or rendered again), S2S
health, targets switched back on."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Connection, Engine

from clickloop.domain.deliveries import DeliveryState, TargetKind
from clickloop.domain.secrets import mask_secrets
from clickloop.services.entities import REMOVED_FROM_CAMPAIGN
from clickloop.services.outbox import render_again
from clickloop.storage import outbox
from clickloop.storage import tables as t
from clickloop.storage.db import reader_engine, writer_engine

NOT_RESENDABLE = "no such delivery, or it is being sent right now"


@dataclass(frozen=True, slots=True, kw_only=True)
class Resent:
    """What a resend did, by requested delivery id: the delivery queued for it (itself, or for
    a rerender the delivery rendered from it), or why none was."""

    queued: dict[int, int]
    skipped: dict[int, str]


def resend(
    engine: Engine, delivery_ids: Iterable[int], *, now: datetime, rerender: bool = False
) -> Resent:
    """Queue these deliveries again with a fresh retry schedule.

    As stored; or, with `rerender`, rendered again from the current configuration and the stored
    click and conversion (see `_rerender`). A delivery being sent right now is skipped:
    requeueing it could send it twice at once.
    """
    ids = sorted(set(delivery_ids))
    with writer_engine(engine).begin() as conn:
        if rerender:
            resent = _rerender(conn, outbox.lock_resendable(conn, now=now, ids=ids), now=now)
        else:
            requeued = outbox.resend(conn, delivery_ids=ids, now=now)
            resent = Resent(queued={i: i for i in requeued}, skipped={})
    missing = {i: NOT_RESENDABLE for i in ids if i not in resent.queued and i not in resent.skipped}
    return Resent(queued=resent.queued, skipped=resent.skipped | missing)


def resend_failed(
    engine: Engine, *, now: datetime, since: datetime | None = None, rerender: bool = False
) -> int:
    """Queue every failed delivery (created at or after `since`) again, as stored or rendered
    again; return how many were queued."""
    with writer_engine(engine).begin() as conn:
        if not rerender:
            return outbox.resend_failed(conn, now=now, since=since)
        failed = outbox.lock_resendable(conn, now=now, state=DeliveryState.FAILED, since=since)
        return len(set(_rerender(conn, failed, now=now).queued.values()))


def _rerender(conn: Connection, found: list[outbox.Resendable], *, now: datetime) -> Resent:
    """Render each delivery's target again for its conversion and queue the result.

    The dedup key is (target, conversion, rendered request): a request that renders as before
    requeues its own delivery, one identical to another delivery requeues that one, and a new
    one is inserted. The old delivery is then superseded, so a wrong URL stops retrying;
    a delivered one stays delivered (it is history).
    """
    rendered = render_again(
        conn, [(d.conversion_id, d.target_kind, d.target_id) for d in found], now=now
    )
    queued: dict[int, int] = {}
    skipped: dict[int, str] = {}
    for delivery in found:
        new = rendered[(delivery.conversion_id, delivery.target_kind, delivery.target_id)]
        if isinstance(new, str):
            skipped[delivery.id] = new
        elif new.dedup_key == delivery.dedup_key:
            if outbox.resend(conn, delivery_ids=[delivery.id], now=now):
                queued[delivery.id] = delivery.id
        elif (new_id := outbox.queue_again(conn, new, now=now)) is None:
            skipped[delivery.id] = "the request it now renders is being sent right now"
        else:
            queued[delivery.id] = new_id
            if delivery.state is not DeliveryState.DELIVERED:
                outbox.supersede(conn, delivery_id=delivery.id, by=new_id)
    return Resent(queued=queued, skipped=skipped)


def enable_target(engine: Engine, kind: TargetKind, target_id: int, *, now: datetime) -> int:
    """Switch an S2S target back on; its parked deliveries are queued again. Return how many."""
    with writer_engine(engine).begin() as conn:
        return outbox.enable_target(conn, kind=kind, target_id=target_id, now=now)


def queue_depth(engine: Engine) -> dict[str, int]:
    """Deliveries waiting: never tried (`queued`) and due again after a failure (`retrying`)."""
    with reader_engine(engine).connect() as conn:
        return outbox.queue_depth(conn)


def s2s_health(engine: Engine) -> dict[str, Any]:
    """Deliveries by state, and every target failing or switched off (the alerts; a campaign
    postback's alert names its campaign)."""
    ts, cp = t.traffic_sources, t.campaign_postbacks
    with reader_engine(engine).connect() as conn:
        states = outbox.count_by_state(conn)
        d = t.deliveries.c
        # Of the queued ones, those tried already and waiting for their next try.
        retrying = conn.execute(
            select(func.count()).where(d.state == str(DeliveryState.QUEUED), d.attempts > 0)
        ).scalar_one()
        sources = conn.execute(
            select(
                ts.c.id,
                ts.c.name,
                ts.c.postback_enabled,
                ts.c.postback_disabled_reason,
                ts.c.failing_since,
            ).where(or_(ts.c.failing_since.is_not(None), ts.c.postback_enabled.is_(False)))
        ).all()
        postbacks = conn.execute(
            select(cp.c.id, cp.c.campaign_id, cp.c.url, cp.c.enabled, cp.c.disabled_reason)
            .add_columns(cp.c.failing_since)
            .where(
                or_(cp.c.failing_since.is_not(None), cp.c.enabled.is_(False)),
                # A postback taken off its campaign is history, not an alert.
                or_(cp.c.disabled_reason.is_(None), cp.c.disabled_reason != REMOVED_FROM_CAMPAIGN),
            )
        ).all()
    alerts = [
        {
            "kind": str(TargetKind.TRAFFIC_SOURCE),
            "id": r.id,
            "name": r.name,
            "campaign_id": None,
            "enabled": r.postback_enabled,
            "reason": r.postback_disabled_reason,
            "since": r.failing_since,
        }
        for r in sources
    ] + [
        {
            "kind": str(TargetKind.CAMPAIGN_POSTBACK),
            "id": r.id,
            "name": mask_secrets(r.url),
            "campaign_id": r.campaign_id,
            "enabled": r.enabled,
            "reason": r.disabled_reason,
            "since": r.failing_since,
        }
        for r in postbacks
    ]
    return {
        "states": {state: states.get(str(state), 0) for state in DeliveryState},
        "retrying": retrying,
        "alerts": alerts,
    }
