"""What a user does with the sent-postback log: send deliveries again now (CLI, API and UI)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.engine import Engine

from clickloop.storage import outbox
from clickloop.storage.db import writer_engine


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
