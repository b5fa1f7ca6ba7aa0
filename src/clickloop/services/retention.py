"""Retention of raw clicks, the partitions they go into, the visitors uniqueness remembers, and
the planner's statistics.

Clicks created before the horizon go: on PostgreSQL whole day partitions are dropped, on SQLite
rows are deleted a bounded chunk per transaction. Conversions, received postbacks and
deliveries stay (the money record and its audit), and so do the report aggregates, which hold
the history (docs/deployment.md, "Operations: retention and disk").
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from typing import TypeVar

from sqlalchemy import Integer, delete, func, literal_column, select, text, tuple_
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from clickloop.storage import report_cubes as cubes
from clickloop.storage import tables as t
from clickloop.storage.click_visitors import UNIQUE_WINDOW, micros_of
from clickloop.storage.db import reader_engine, writer_engine
from clickloop.storage.partitions import (
    DEFAULT_PARTITION,
    drop_partition,
    ensure_partitions,
    is_partitioned,
    partition_days,
    partition_name,
)
from clickloop.storage.sqlite_driver import sqlite3

log = logging.getLogger(__name__)

CHUNK_ROWS = 2000
# Between two SQLite chunks the click writer takes the write lock it waits for.
PAUSE_SECONDS = 0.05
# PostgreSQL: creating or dropping a partition locks the clicks table for a moment; a long query
# on clicks would make it wait, and the click writer behind it. Give up after this and retry.
LOCK_TIMEOUT = "500ms"
LOCK_TRIES = 5
MAINTENANCE_SECONDS = 3600
# SQLite's `PRAGMA optimize` looks at every table (0x10000) from 3.46 on (refresh_statistics).
SQLITE_OPTIMIZES = sqlite3.sqlite_version_info >= (3, 46)
_MAINTENANCE_LOCK = 0x636C6B70  # pg_advisory_lock key: one process maintains at a time
_c = t.clicks.c
_STRAY = text(f"SELECT count(*) FROM {DEFAULT_PARTITION} WHERE created_at < :before")
_R = TypeVar("_R")


@dataclass(frozen=True, slots=True, kw_only=True)
class PrunePlan:
    horizon: datetime  # clicks created before it go
    partitions: tuple[tuple[date, int], ...]  # PostgreSQL: the days dropped, with their clicks
    rows: int  # clicks deleted row by row (SQLite; PostgreSQL's default partition)

    @property
    def clicks(self) -> int:
        return self.rows + sum(count for _, count in self.partitions)


def horizon(now: datetime, days: int) -> datetime:
    """The start of the UTC day `days` days before `now`: retention keeps whole days."""
    return datetime.combine((now.astimezone(UTC) - timedelta(days=days)).date(), clock(), UTC)


def plan_prune(engine: Engine, before: datetime) -> PrunePlan:
    """What pruning the clicks created before `before` takes away."""
    with reader_engine(engine).connect() as conn:
        if not is_partitioned(conn):
            return PrunePlan(horizon=before, partitions=(), rows=_count_rows(conn, before))
        days = [day for day in partition_days(conn) if day + timedelta(days=1) <= before.date()]
        counted = tuple((day, _count_partition(conn, day)) for day in days)
        rows = conn.execute(_STRAY, {"before": before}).scalar_one()
        return PrunePlan(horizon=before, partitions=counted, rows=rows)


def prune(engine: Engine, plan: PrunePlan) -> Iterator[int]:
    """Carry out `plan`; yield the clicks removed by each step as it is done."""
    for day, count in plan.partitions:
        _with_short_lock(engine, functools.partial(drop_partition, day=day))
        yield count
    if not plan.rows:
        return
    if is_partitioned(engine):  # the default partition's clicks of those days
        with writer_engine(engine).begin() as conn:
            yield conn.execute(delete(t.clicks).where(_c.created_at < plan.horizon)).rowcount
    else:
        yield from _delete_in_chunks(engine, plan.horizon)


def maintain(
    engine: Engine, now: datetime, retention_days: int, *, analyze: bool = True
) -> PrunePlan | None:
    """What `serve` does at start and every hour: partitions for the week ahead, clicks older
    than `retention_days` (0: none) pruned, statistics refreshed when `analyze` or clicks went;
    returns the prune plan carried out (None: another process is maintaining)."""
    with _maintenance_lock(engine) as mine:
        if not mine:
            return None
        created = _with_short_lock(engine, lambda conn: ensure_partitions(conn, now.date()))
        if created:
            log.info("created click partitions %s", ", ".join(created))
        forgotten = sum(forget_visitors(engine, now))
        if forgotten:
            log.info("forgot %d visitors not seen in the unique window", forgotten)
        plan = PrunePlan(horizon=now, partitions=(), rows=0)
        if retention_days:
            plan = plan_prune(engine, horizon(now, retention_days))
            removed = sum(prune(engine, plan))
            if plan.clicks:
                log.info("pruned %d clicks created before %s", removed, plan.horizon)
        if analyze or plan.clicks:
            refresh_statistics(engine)
        return plan


async def run_maintenance(
    engine: Engine, *, retention_days: int, every: float = MAINTENANCE_SECONDS
) -> None:
    """`maintain` now and then every `every` seconds, until cancelled; a failure is logged and
    the next round tries again (the default partition takes clicks meanwhile)."""
    analyzed_on = None
    while True:
        now = datetime.now(UTC)
        try:
            # Statistics at start and once a day (they cost a sample of the clicks).
            analyze = analyzed_on != now.date()
            await asyncio.to_thread(maintain, engine, now, retention_days, analyze=analyze)
            analyzed_on = now.date()
        except Exception:
            log.exception("click partitions and retention: failed, trying again later")
        await asyncio.sleep(every)


def refresh_statistics(engine: Engine) -> None:
    """Statistics for the planner: PostgreSQL's autovacuum never analyzes a partitioned table
    itself (only its partitions), nor anything where it is off, and a report cube taken for
    empty is grouped by an external sort (campaign > country at 10M clicks: 292 → 127 ms once
    analyzed); SQLite has none until asked. Its ANALYZE holds the writers' lock, and since
    3.4x counts each table's rows even with an analysis limit (clicks at 10M: 0.15 s from the
    page cache, 5.2 s from disk, where the click writer gives up after 5 s), so on SQLite 3.46
    and newer `PRAGMA optimize` analyzes only the tables that have no statistics yet or whose
    size changed manyfold since (its own estimate, no count); on an older SQLite, which samples
    instead of counting, a bounded ANALYZE of each table, in a transaction of its own."""
    with writer_engine(engine).connect() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(table.name for table in t.report_aggregates)
            conn.exec_driver_sql(f"ANALYZE clicks, {names}")
        elif SQLITE_OPTIMIZES:
            # Every table (0x10000), not only those this connection used; a bounded ANALYZE (0x10).
            conn.exec_driver_sql("PRAGMA optimize=0x10012")
        else:
            conn.exec_driver_sql("PRAGMA analysis_limit=1000")
            for table in t.metadata.sorted_tables:
                conn.exec_driver_sql(f'ANALYZE "{table.name}"')
                conn.commit()
        conn.commit()


def _count_partition(conn: Connection, day: date) -> int:
    return int(conn.exec_driver_sql(f"SELECT count(*) FROM {partition_name(day)}").scalar_one())


def _count_rows(conn: Connection, before: datetime) -> int:
    return sum(
        conn.execute(
            select(func.count()).where(_c.campaign_id == campaign, _c.created_at < before)
        ).scalar_one()
        for campaign in _campaign_ids(conn)
    )


def _campaign_ids(conn: Connection) -> Iterator[int]:
    """The campaigns that have clicks, one index seek each (clicks outlive deleted campaigns)."""
    query = select(func.min(_c.campaign_id))
    campaign = conn.execute(query).scalar()
    while campaign is not None:
        yield campaign
        campaign = conn.execute(query.where(_c.campaign_id > campaign)).scalar()


def _delete_in_chunks(engine: Engine, before: datetime) -> Iterator[int]:
    """SQLite: each campaign's old clicks, CHUNK_ROWS per transaction found by the index on
    (campaign_id, created_at), so the click writer never waits for more than one chunk."""
    with reader_engine(engine).connect() as conn:
        campaigns = list(_campaign_ids(conn))
    rowid = literal_column("rowid", Integer)
    for campaign in campaigns:
        chunk = (
            select(rowid)
            .select_from(t.clicks)
            .where(_c.campaign_id == campaign, _c.created_at < before)
            .limit(CHUNK_ROWS)
        )
        while True:
            with writer_engine(engine).begin() as conn:
                cubes.caught_up(conn)
                removed = conn.execute(delete(t.clicks).where(rowid.in_(chunk))).rowcount
                cubes.clicks_deleted(conn)
            yield removed
            if removed < CHUNK_ROWS:
                break
            time.sleep(PAUSE_SECONDS)


def forget_visitors(engine: Engine, now: datetime) -> Iterator[int]:
    """Drop the `click_visitors` rows whose last click is older than the unique window (they
    can no longer make a click not unique), CHUNK_ROWS per transaction."""
    v = t.click_visitors.c
    horizon = micros_of(now - UNIQUE_WINDOW)
    old = select(v.campaign_id, v.visitor).where(v.last_us < horizon).limit(CHUNK_ROWS)
    while True:
        with writer_engine(engine).begin() as conn:
            removed = conn.execute(
                delete(t.click_visitors).where(tuple_(v.campaign_id, v.visitor).in_(old))
            ).rowcount
        yield removed
        if removed < CHUNK_ROWS:
            break
        time.sleep(PAUSE_SECONDS)


def _with_short_lock(engine: Engine, work: Callable[[Connection], _R]) -> _R:
    """Run `work` in a transaction whose lock waits end after LOCK_TIMEOUT, retried a few times
    (PostgreSQL; on SQLite just a transaction)."""
    for attempt in range(LOCK_TRIES):
        try:
            with writer_engine(engine).begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                return work(conn)
        except OperationalError:
            if attempt == LOCK_TRIES - 1:
                raise
            time.sleep(1 + attempt)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _maintenance_lock(engine: Engine) -> Iterator[bool]:
    """Whether this process holds the maintenance lock (PostgreSQL: one node and one worker
    maintains at a time; SQLite: always, its chunks being harmless to repeat)."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    with engine.connect() as conn:
        mine = conn.execute(select(func.pg_try_advisory_lock(_MAINTENANCE_LOCK))).scalar_one()
        conn.commit()
        try:
            yield bool(mine)
        finally:
            if mine:
                conn.execute(select(func.pg_advisory_unlock(_MAINTENANCE_LOCK)))
                conn.commit()
