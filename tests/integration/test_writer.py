"""The group-commit writer on a real database: shared commits, isolated failures, outages."""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from clickloop.errors import StorageUnavailable
from clickloop.storage import tables as t
from clickloop.storage.db import make_engine, upgrade
from clickloop.storage.sqlite_driver import sqlite3
from clickloop.storage.writer import GroupCommitWriter

NOW = datetime(2026, 11, 22, 9, 30, 15, 123456, tzinfo=UTC)


def click_row(subid: str, **fields: Any) -> dict[str, Any]:
    """A full click row, shaped as the click handler makes it (every column present)."""
    row: dict[str, Any] = dict.fromkeys(column.name for column in t.clicks.columns)
    row.update(subid=subid, created_at=NOW, campaign_id=1, **fields)
    return row


def run_with_writer(
    engine: Engine, scenario: Callable[[GroupCommitWriter], Coroutine[Any, Any, Any]]
) -> Any:
    async def main() -> Any:
        writer = GroupCommitWriter(engine)
        writer.start()
        try:
            return await scenario(writer)
        finally:
            await writer.stop()

    return asyncio.run(main())


async def queue_behind_gate(
    writer: GroupCommitWriter, submit: Callable[[], list[asyncio.Future[Any]]]
) -> list[Any]:
    """Hold the writer inside a transaction until everything `submit` makes is queued, so that
    it all lands in one batch; return each one's outcome (result or exception)."""
    gate = threading.Event()
    blocker = asyncio.ensure_future(writer.run(lambda _conn: gate.wait(30)))
    await asyncio.sleep(0)  # the blocker is queued first
    futures = submit()
    await asyncio.sleep(0)  # every task has run up to its wait on the writer
    gate.set()
    await blocker
    return list(await asyncio.gather(*futures, return_exceptions=True))


def count_clicks(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.clicks)).scalar_one())


def test_concurrent_inserts_share_commits_and_are_all_durable(engine: Engine) -> None:
    """500 concurrent clicks are all stored in one commit (two if the gate's came apart)."""
    commits: list[object] = []
    event.listen(engine, "commit", commits.append)
    rows = [click_row(f"s{n:05d}", external_id=f"e{n}") for n in range(500)]

    async def scenario(writer: GroupCommitWriter) -> list[Any]:
        return await queue_behind_gate(
            writer,
            lambda: [asyncio.ensure_future(writer.insert(t.clicks, r, None)) for r in rows],
        )

    outcomes = run_with_writer(engine, scenario)
    assert outcomes == [None] * 500
    assert count_clicks(engine) == 500
    assert 1 <= len(commits) <= 2


def test_rows_keep_their_types_through_the_fast_insert(engine: Engine) -> None:
    """Money, UTC time, JSON and NULLs read back exactly as the handler wrote them."""
    row = click_row(
        "typed", cost=Decimal("0.012345"), extra={"did": "é", "n": "1"}, user_agent=None
    )

    async def scenario(writer: GroupCommitWriter) -> None:
        await writer.insert(t.clicks, dict(row), None)

    run_with_writer(engine, scenario)
    with engine.connect() as conn:
        stored = conn.execute(select(t.clicks)).one()._mapping
    assert stored["cost"] == Decimal("0.012345") and stored["created_at"] == NOW
    assert stored["extra"] == {"did": "é", "n": "1"} and stored["user_agent"] is None


def test_prepare_runs_in_the_writer_before_the_insert(engine: Engine) -> None:
    """Derived fields filled by `prepare` are stored; a failing `prepare` still stores the row."""

    def derive(row: dict[str, Any]) -> None:
        row["os"] = "iOS"

    def broken(row: dict[str, Any]) -> None:
        raise RuntimeError("parser bug")

    async def scenario(writer: GroupCommitWriter) -> None:
        await writer.insert(t.clicks, click_row("a"), derive)
        await writer.insert(t.clicks, click_row("b"), broken)

    run_with_writer(engine, scenario)
    with engine.connect() as conn:
        stored = dict(conn.execute(select(t.clicks.c.subid, t.clicks.c.os)).all())
    assert stored == {"a": "iOS", "b": None}


def test_one_bad_unit_does_not_fail_its_neighbours(engine: Engine) -> None:
    """A duplicate row and a raising work fail alone; the rest of their batch commits."""

    def insert_existing(conn: Connection) -> None:
        conn.execute(t.clicks.insert(), [click_row("taken")])

    async def scenario(writer: GroupCommitWriter) -> list[Any]:
        await writer.insert(t.clicks, click_row("taken"), None)
        return await queue_behind_gate(
            writer,
            lambda: [
                asyncio.ensure_future(writer.insert(t.clicks, click_row("good-1"), None)),
                asyncio.ensure_future(writer.insert(t.clicks, click_row("taken"), None)),
                asyncio.ensure_future(writer.run(lambda _c: 1 / 0)),
                asyncio.ensure_future(writer.run(insert_existing)),
                asyncio.ensure_future(writer.run(lambda _c: 42)),
                asyncio.ensure_future(writer.insert(t.clicks, click_row("good-2"), None)),
            ],
        )

    good_1, duplicate, division, work_duplicate, answer, good_2 = run_with_writer(engine, scenario)
    assert good_1 is None and good_2 is None and answer == 42
    assert isinstance(duplicate, IntegrityError)
    assert isinstance(division, ZeroDivisionError)
    assert isinstance(work_duplicate, IntegrityError)
    with engine.connect() as conn:
        stored = set(conn.scalars(select(t.clicks.c.subid)))
    assert stored == {"taken", "good-1", "good-2"}


def test_storage_unavailable(engine: Engine, database_url: str) -> None:
    """A database that cannot be opened fails each waiting caller with StorageUnavailable."""
    engine.dispose()
    if database_url.startswith("sqlite"):
        path = Path(database_url.split("///", 1)[1])
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        path.write_bytes(b"this is not a database, " * 1000)
    else:
        import psycopg

        name = database_url.rsplit("/", 1)[1]
        admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    broken = make_engine(database_url)

    async def scenario(writer: GroupCommitWriter) -> list[Any]:
        return list(
            await asyncio.gather(
                writer.insert(t.clicks, click_row("lost-1"), None),
                writer.insert(t.clicks, click_row("lost-2"), None),
                writer.run(lambda _conn: 1),
                return_exceptions=True,
            )
        )

    outcomes = run_with_writer(broken, scenario)
    broken.dispose()
    assert [type(outcome) for outcome in outcomes] == [StorageUnavailable] * 3


def test_a_stopped_writer_refuses_work(engine: Engine) -> None:
    """After stop() nothing can be queued: callers get StorageUnavailable, not a hang."""

    async def scenario() -> None:
        writer = GroupCommitWriter(engine)
        writer.start()
        await writer.stop()
        with pytest.raises(StorageUnavailable):
            await writer.insert(t.clicks, click_row("late"), None)

    asyncio.run(scenario())
    assert count_clicks(engine) == 0


@pytest.mark.parametrize("delay", [0.0, 0.0005])
def test_after_a_busy_batch_the_next_waits_the_commit_delay(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, delay: float
) -> None:
    """A batch of 5 or more means requests arrive together: the writer waits `delay` before the
    next commit, so that more share it. After a small batch, or with no delay, it never waits."""
    waits: list[float] = []

    async def scenario() -> None:
        writer = GroupCommitWriter(engine, delay=delay)
        monkeypatch.setattr(writer._everyone_in, "wait", waits.append)
        writer.start()
        try:
            await writer.insert(t.clicks, click_row("alone"), None)
            assert waits == []  # after a batch of one
            burst = [click_row(f"burst{n}") for n in range(8)]
            await queue_behind_gate(
                writer,
                lambda: [asyncio.ensure_future(writer.insert(t.clicks, r, None)) for r in burst],
            )
            await writer.insert(t.clicks, click_row("after"), None)
        finally:
            await writer.stop()

    asyncio.run(scenario())
    assert waits == ([delay] if delay else [])
    assert count_clicks(engine) == 10


@pytest.mark.parametrize("on_loop", [False, True], ids=["thread", "loop"])
def test_a_busy_batch_stops_waiting_once_every_connection_is_in(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, on_loop: bool
) -> None:
    """With every open connection's request in the batch nobody else can join: the writer
    commits at once instead of waiting out the commit delay (here 30 s)."""
    connections = 6

    async def scenario() -> list[int]:
        writer = GroupCommitWriter(
            engine, delay=30.0, on_loop=on_loop, connections=lambda: connections
        )
        writer.start()
        try:
            busy = [click_row(f"busy{n}") for n in range(connections)]
            # A first burst in one batch makes the writer busy: the next batch would wait.
            if on_loop:
                await insert_together(writer, busy)
            else:
                await queue_behind_gate(
                    writer,
                    lambda: [asyncio.ensure_future(writer.insert(t.clicks, r, None)) for r in busy],
                )
            batches = record_batches(writer, monkeypatch)
            everyone = [click_row(f"everyone{n}") for n in range(connections)]
            await asyncio.wait_for(insert_together(writer, everyone), 10)
        finally:
            await writer.stop()
        return batches

    batches = asyncio.run(scenario())
    assert count_clicks(engine) == 2 * connections
    assert sum(batches) == connections
    if on_loop:  # the loop commits exactly what one turn submitted
        assert batches == [connections]


def test_on_the_loop_a_lone_request_commits_at_once_and_a_burst_in_one_commit(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the loop: one commit per turn of the loop when idle; under load the next batch waits
    up to the commit delay for company (no connections known here), then commits."""

    async def scenario() -> tuple[list[int], float]:
        writer = GroupCommitWriter(engine, delay=0.2, on_loop=True)
        batches = record_batches(writer, monkeypatch)
        writer.start()
        try:
            await asyncio.wait_for(writer.insert(t.clicks, click_row("alone"), None), 10)
            await insert_together(writer, [click_row(f"burst{n}") for n in range(50)])
            started = time.monotonic()
            await insert_together(writer, [click_row("late1"), click_row("late2")])
            waited = time.monotonic() - started
        finally:
            await writer.stop()
        return batches, waited

    batches, waited = asyncio.run(scenario())
    assert batches == [1, 50, 2]
    assert waited >= 0.2  # the busy writer waited for company that never came
    assert count_clicks(engine) == 53


def test_on_the_loop_one_bad_unit_does_not_fail_its_neighbours(engine: Engine) -> None:
    def fail(conn: Connection) -> None:
        conn.execute(t.clicks.insert(), [click_row("in-failed-unit")])
        raise ValueError("this unit fails")

    async def scenario() -> list[Any]:
        writer = GroupCommitWriter(engine, on_loop=True)
        writer.start()
        try:
            return await asyncio.gather(
                writer.insert(t.clicks, click_row("before"), None),
                writer.run(fail),
                writer.insert(t.clicks, click_row("dup"), None),
                writer.insert(t.clicks, click_row("dup"), None),  # violates the unique subid
                writer.insert(t.clicks, click_row("after"), None),
                return_exceptions=True,
            )
        finally:
            await writer.stop()

    before, failed, dup, duplicate, after = asyncio.run(scenario())
    assert before is None and dup is None and after is None
    assert isinstance(failed, ValueError)
    assert isinstance(duplicate, IntegrityError)
    assert count_clicks(engine) == 3


def record_batches(writer: GroupCommitWriter, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each batch `writer` commits from now on."""
    batches: list[int] = []
    commit = writer._commit

    def recording(jobs: list[Any]) -> None:
        batches.append(len(jobs))
        commit(jobs)

    monkeypatch.setattr(writer, "_commit", recording)
    return batches


async def insert_together(writer: GroupCommitWriter, rows: list[dict[str, Any]]) -> None:
    """Insert `rows` from concurrent tasks started in one turn of the loop."""
    await asyncio.gather(*(writer.insert(t.clicks, row, None) for row in rows))


def writers_lock_is_free(database: Path) -> bool:
    """Whether no writer holds the cross-process lock of the SQLite file `database` now."""
    lock = os.open(f"{database}-writer.lock", os.O_RDWR | os.O_CREAT)
    try:  # a second open file description conflicts with a held flock
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(lock, fcntl.LOCK_UN)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(lock)


def test_prepare_runs_before_the_writers_lock_is_taken(tmp_path: Path) -> None:
    """Parsing a user agent must not hold up the other server processes' writers."""
    database = tmp_path / "clicks.db"
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    lock_free_during_prepare: list[bool] = []

    def derive(row: dict[str, Any]) -> None:
        lock_free_during_prepare.append(writers_lock_is_free(database))

    async def scenario(writer: GroupCommitWriter) -> None:
        await writer.insert(t.clicks, click_row("first"), derive)
        await writer.insert(t.clicks, click_row("second"), derive)

    run_with_writer(engine, scenario)
    assert lock_free_during_prepare == [True, True]
    assert count_clicks(engine) == 2
    engine.dispose()


@pytest.mark.parametrize(("synchronous", "fsynced"), [("FULL", True), ("NORMAL", False)])
def test_full_sync_fsyncs_the_wal_after_the_lock_before_answering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synchronous: str, fsynced: bool
) -> None:
    """At FULL, each batch's WAL is fsynced outside the writers' lock (so other processes can
    commit meanwhile) and before its callers hear back; the pooled connections stay at FULL.
    At NORMAL nothing is fsynced."""
    database = tmp_path / "clicks.db"
    engine = make_engine(f"sqlite:///{database}", sqlite_synchronous=synchronous)
    upgrade(engine)
    syncs: list[tuple[str, bool, int]] = []
    real_fdatasync = os.fdatasync

    def recording_fdatasync(fd: int) -> None:
        lock_free = writers_lock_is_free(database)
        syncs.append((os.readlink(f"/proc/self/fd/{fd}"), lock_free, count_clicks(engine)))
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", recording_fdatasync)
    answered: list[int] = []

    async def scenario(writer: GroupCommitWriter) -> None:
        await writer.insert(t.clicks, click_row("first"), None)
        answered.append(len(syncs))

    run_with_writer(engine, scenario)
    if fsynced:
        assert syncs == [(f"{database}-wal", True, 1)]  # committed, lock free, then synced
        assert answered == [1]
    else:
        assert syncs == [] and answered == [0]
    with engine.connect() as conn:
        level = conn.exec_driver_sql("PRAGMA synchronous").scalar_one()
    assert level == {"FULL": 2, "NORMAL": 1}[synchronous]
    engine.dispose()


def test_on_a_sqlite_file_the_writer_keeps_one_connection_until_an_error(
    tmp_path: Path,
) -> None:
    """Batches reuse the writer's own connection; one that failed is dropped, not reused."""
    engine = make_engine(f"sqlite:///{tmp_path / 'clicks.db'}")
    upgrade(engine)
    checkouts: list[object] = []
    event.listen(engine.pool, "checkout", lambda *args: checkouts.append(args[0]))

    async def scenario(writer: GroupCommitWriter) -> None:
        for n in range(3):
            await writer.insert(t.clicks, click_row(f"k{n}"), None)
        assert len(checkouts) == 1
        with pytest.raises(IntegrityError):
            await writer.insert(t.clicks, click_row("k0"), None)
        await writer.insert(t.clicks, click_row("k3"), None)
        assert len(checkouts) == 2 and checkouts[0] is not checkouts[1]

    run_with_writer(engine, scenario)
    assert count_clicks(engine) == 4
    engine.dispose()


def test_a_failed_fsync_answers_storage_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row was committed, but not known to be on disk: the caller must not be told it is."""
    engine = make_engine(f"sqlite:///{tmp_path / 'clicks.db'}")
    upgrade(engine)

    def failing_fdatasync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing_fdatasync)

    async def scenario(writer: GroupCommitWriter) -> None:
        with pytest.raises(StorageUnavailable, match="fsync failed"):
            await writer.insert(t.clicks, click_row("unsure"), None)

    run_with_writer(engine, scenario)
    engine.dispose()


@pytest.fixture
def locked_sqlite(tmp_path: Path) -> Iterator[tuple[Engine, sqlite3.Connection]]:
    """A migrated SQLite file, and a connection of its own holding the write lock (as the admin
    API or the S2S dispatcher would): `holder.execute("COMMIT")` frees it."""
    database = tmp_path / "clicks.db"
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield engine, holder
    finally:
        holder.close()
        engine.dispose()


def test_on_the_loop_a_taken_sqlite_lock_is_waited_for_without_blocking_the_loop(
    locked_sqlite: tuple[Engine, sqlite3.Connection],
) -> None:
    """Another connection (the admin API, say) holds SQLite's write lock: the batch is tried
    again shortly, the loop keeps running meanwhile, and the click commits once it is free."""
    engine, holder = locked_sqlite

    async def scenario() -> int:
        writer = GroupCommitWriter(engine, on_loop=True)
        writer.start()
        try:
            insert = asyncio.ensure_future(writer.insert(t.clicks, click_row("waits"), None))
            ticks = 0
            for _ in range(20):  # 0.2 s in which the loop must keep turning
                await asyncio.sleep(0.01)
                ticks += 1
            assert not insert.done()
            holder.execute("COMMIT")
            await asyncio.wait_for(insert, 10)
            return ticks
        finally:
            await writer.stop()

    assert asyncio.run(scenario()) == 20
    assert count_clicks(engine) == 1


def test_on_the_loop_a_lock_held_too_long_answers_storage_unavailable(
    locked_sqlite: tuple[Engine, sqlite3.Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    from clickloop.storage import writer as writer_module

    monkeypatch.setattr(writer_module, "_BUSY_GIVE_UP", 0.2)
    engine, holder = locked_sqlite

    async def scenario() -> None:
        writer = GroupCommitWriter(engine, on_loop=True)
        writer.start()
        try:
            with pytest.raises(StorageUnavailable, match="locked"):
                await asyncio.wait_for(writer.insert(t.clicks, click_row("gives-up"), None), 10)
            holder.execute("COMMIT")
            await writer.insert(t.clicks, click_row("then-commits"), None)
        finally:
            await writer.stop()

    asyncio.run(scenario())
    with engine.connect() as conn:
        assert set(conn.scalars(select(t.clicks.c.subid))) == {"then-commits"}


def test_on_the_loop_stopping_waits_for_a_batch_that_found_the_lock_taken(
    locked_sqlite: tuple[Engine, sqlite3.Connection],
) -> None:
    engine, holder = locked_sqlite

    async def scenario() -> None:
        writer = GroupCommitWriter(engine, on_loop=True)
        writer.start()
        insert = asyncio.ensure_future(writer.insert(t.clicks, click_row("at-stop"), None))
        await asyncio.sleep(0.05)
        stopping = asyncio.ensure_future(writer.stop())
        await asyncio.sleep(0.05)
        assert not stopping.done()
        holder.execute("COMMIT")
        await asyncio.wait_for(stopping, 10)
        await insert

    asyncio.run(scenario())
    assert count_clicks(engine) == 1
