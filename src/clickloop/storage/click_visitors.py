"""Unique clicks: which clicks of a batch are their visitor's first on their campaign in 24
hours (docs/reports.md, "Unique clicks"), kept in `click_visitors`."""

from __future__ import annotations

import functools
import itertools
import operator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from clickloop.storage.driver_sql import UPSERT_CHUNK, execute, sizes

UNIQUE_WINDOW = timedelta(hours=24)
_MICROSECOND = timedelta(microseconds=1)
_UNIQUE_WINDOW_US = UNIQUE_WINDOW // _MICROSECOND
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_CREATED_AT = operator.itemgetter("created_at")


def mark_unique(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """A click is unique when its visitor did not click its campaign in the 24 hours before:
    `click_visitors` holds each visitor's last click on each campaign (µs since the epoch),
    moved forward by the batch's clicks; the same statement returns the click it held before
    (a batch's own clicks in time order; clicks committed by other processes at the same
    moment are not seen, so a visitor's first clicks there may both count)."""
    ordered = sorted(rows, key=_CREATED_AT)
    clicks: list[tuple[dict[str, Any], tuple[int, int], int]] = []
    newest: dict[tuple[int, int], int] = {}
    for row in ordered:
        if not row.get("visitor"):
            row["is_unique"] = True
            continue
        pair = (row["campaign_id"], row["visitor"])
        newest[pair] = created = micros_of(row["created_at"])
        clicks.append((row, pair, created))
    last = _remember_clicks(conn, sorted(newest.items()))
    for row, pair, created in clicks:
        if pair not in last:  # it knew a click at or after the batch's last one of the visitor
            row["is_unique"] = False
            continue
        seen = last[pair]
        row["is_unique"] = seen is None or seen < created - _UNIQUE_WINDOW_US
        if seen is None or created > seen:
            last[pair] = created


def micros_of(moment: datetime) -> int:
    """`moment` in µs since the epoch, exactly (click_visitors' times)."""
    return (moment - _EPOCH_UTC) // _MICROSECOND


def _remember_clicks(
    conn: Connection, newest: list[tuple[tuple[int, int], int]]
) -> dict[tuple[int, int], int | None]:
    """Move each (campaign, visitor)'s last click forward to the batch's newest (never back);
    returns the click each moved one held before (None: a new visitor). A pair it does not
    return held a click at or after the batch's newest already."""
    held: dict[tuple[int, int], int | None] = {}
    start = 0
    for size in sizes(len(newest), UPSERT_CHUNK):
        chunk = newest[start : start + size]
        params = tuple(itertools.chain.from_iterable((c, v, at) for (c, v), at in chunk))
        for campaign, visitor, before in execute(
            conn, _remember_sql(conn.dialect.name, size), params
        ):
            held[(campaign, visitor)] = before
        start += size
    return held


@functools.cache
def _remember_sql(dialect: str, count: int) -> str:
    mark = "?" if dialect == "sqlite" else "%s"
    values = ", ".join([f"({mark}, {mark}, {mark})"] * count)
    return (
        f"INSERT INTO click_visitors (campaign_id, visitor, last_us) VALUES {values} "
        "ON CONFLICT (campaign_id, visitor) DO UPDATE SET "
        "before_us = click_visitors.last_us, last_us = excluded.last_us "
        "WHERE excluded.last_us > click_visitors.last_us "
        "RETURNING campaign_id, visitor, before_us"
    )
