"""The sent-postback log as users act on it: send again, S2S health, targets switched back on."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.engine import Engine

from clickloop.domain.deliveries import DeliveryState, TargetKind
from clickloop.domain.secrets import mask_secrets
from clickloop.services.entities import REMOVED_FROM_CAMPAIGN
from clickloop.storage import outbox
from clickloop.storage import tables as t
from clickloop.storage.db import reader_engine, writer_engine


def resend(engine: Engine, delivery_ids: Iterable[int], *, now: datetime) -> int:
    """Queue these deliveries again with a fresh retry schedule; return how many were.

    A delivery being sent right now is skipped: requeueing it could send it twice at once.
    """
    with writer_engine(engine).begin() as conn:
        return outbox.resend(conn, delivery_ids=delivery_ids, now=now)


def resend_failed(engine: Engine, *, now: datetime, since: datetime | None = None) -> int:
    """Queue every failed delivery (created at or after `since`) again; return how many."""
    with writer_engine(engine).begin() as conn:
        return outbox.resend_failed(conn, now=now, since=since)


def enable_target(engine: Engine, kind: TargetKind, target_id: int, *, now: datetime) -> int:
    """Switch an S2S target back on; its parked deliveries are queued again. Return how many."""
    with writer_engine(engine).begin() as conn:
        return outbox.enable_target(conn, kind=kind, target_id=target_id, now=now)


def s2s_health(engine: Engine) -> dict[str, Any]:
    """Deliveries by state, and every target failing or switched off (the alerts; a campaign
    postback's alert names its campaign)."""
    ts, cp = t.traffic_sources, t.campaign_postbacks
    with reader_engine(engine).connect() as conn:
        states = outbox.count_by_state(conn)
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
        "alerts": alerts,
    }
