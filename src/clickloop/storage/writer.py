"""Group commit: many concurrent requests become few transactions.

A request submits a row or a unit of work and awaits the commit of the batch it joined, so an
answer never goes out for work that is only in memory. One row per commit when idle, hundreds
under load, when a batch first waits up to `delay` for more requests to join (PostgreSQL's
`commit_delay`), but no longer than until every open connection's request is in it: then
nobody else can join.

Where batches are committed:
- on the event loop itself (`on_loop`, for SQLite): a commit of a few dozen rows costs a few
  hundred µs of CPU, and a writer thread beside the loop cost more than that in GIL hand-overs
  and wake-ups (docs/clicks.md). The loop waits for the writers' lock and the WAL's fsync,
  while the requests in the batch could not be answered anyway.
- in a writer thread: network round trips (PostgreSQL) never stall the loop, and units of work
  that gather their requests while the writer is busy (postbacks, see http/app.py) get the
  thread's latency to do so.

In a thread, a request waits at most `timeout` for its commit: a database that stopped
answering (a hung server keeps its sockets open, so no network timeout fires) leaves the
writer blocked in a call, and a watchdog on the loop answers the waiting requests with
StorageUnavailable instead, then fails new ones at once until that call returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from clickloop.errors import StorageUnavailable
from clickloop.storage import sqlite_rows
from clickloop.storage.checkpoints import WalCheckpointer
from clickloop.storage.sqlite_driver import sqlite3

log = logging.getLogger(__name__)

_STOP = object()
# A batch at least this large means requests are arriving together: the next one waits `delay`.
_BUSY_BATCH = 5
_MAX_CACHED_INSERTS = 64
_FULL = 2  # PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA
# On the loop, a batch that finds SQLite's write lock taken is tried again after these pauses
# (the last one repeated) until this long has passed, as a busy_timeout would wait.
_BUSY_PAUSES = (0.0005, 0.001, 0.002, 0.004, 0.005)
_BUSY_GIVE_UP = 5.0


@dataclass(slots=True)
class _Job:
    future: asyncio.Future[Any]
    table: Table | None = None
    row: dict[str, Any] | None = None
    prepare: Callable[[dict[str, Any]], None] | None = None
    work: Callable[[Connection], Any] | None = None
    result: Any = None
    error: BaseException | None = None


class GroupCommitWriter:
    """Commits submitted rows and work in batches, on the event loop or in a thread of its own."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = 2000,
        delay: float = 0.0,
        checkpoint_interval: float = 0.02,
        on_loop: bool = False,
        connections: Callable[[], int] | None = None,
        timeout: float | None = None,
        before_insert: Callable[[Connection, Table, list[dict[str, Any]]], None] | None = None,
    ) -> None:
        """`connections()`: how many client connections the process has open, if known;
        `timeout`: how long a request waits for its commit (in a thread; None: no limit);
        `before_insert(conn, table, rows)`: runs in a batch's transaction before its rows of
        `table` are inserted, and may complete them (the report cubes' hook)."""
        self._engine = engine
        self._before_insert = before_insert
        self._max_batch = max_batch
        self._delay = delay
        self._on_loop = on_loop
        self._connections = connections
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # Thread mode: the queue, how many jobs in it no batch took yet, and the event set
        # once that is every open connection.
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._unbatched = 0
        self._unbatched_lock = threading.Lock()
        self._everyone_in = threading.Event()
        # Thread mode with a timeout: the jobs submitted and not known to be settled, oldest
        # first, with when each was submitted; the watchdog's timer; whether a batch is known
        # to have overrun the timeout (and has not returned yet).
        self._timeout = None if on_loop else timeout
        self._waiting: deque[tuple[float, _Job]] = deque()
        self._watchdog: asyncio.TimerHandle | None = None
        self._stalled = False
        # Loop mode: the batch being gathered, and its scheduled commit (soon, or a timer).
        self._pending: list[_Job] = []
        self._flush_handle: asyncio.Handle | None = None
        self._flush_is_soon = False
        self._previous = 0  # the size of the last batch
        self._busy_retries = 0
        self._busy_since = 0.0
        self._inserts: dict[tuple[Table, tuple[str, ...]], _Insert | None] = {}
        self._database_path = _sqlite_database_path(engine)
        self._lock_path = f"{self._database_path}-writer.lock" if self._database_path else None
        self._lock_fd: int | None = None
        self._checkpointer = (
            WalCheckpointer(self._database_path, self._lock_path, interval=checkpoint_interval)
            if self._database_path and self._lock_path
            else None
        )
        # On a SQLite file: the writer's own connection, kept between batches, and the WAL's
        # descriptor for the fsync. The database's PRAGMA synchronous is read when it connects:
        # at FULL or above, batches commit at NORMAL under the lock and fsync the WAL after it.
        self._own: Connection | None = None
        self._wal_fd: int | None = None
        self._synchronous: int | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if not self._on_loop:
            self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
            self._thread.start()
            if self._timeout:
                self._watchdog = self._loop.call_later(self._watch_interval(), self._watch)
        self._running = True
        if self._checkpointer is not None:
            self._checkpointer.start()

    async def stop(self) -> None:
        """Commit what is queued, then stop; a thread blocked by a hung database is waited for
        twice the timeout, then left behind (a daemon: it ends with the process)."""
        if not self._running:
            return
        if self._thread is not None:
            self._running = False
            self._queue.put(_STOP)
            await asyncio.to_thread(self._thread.join, 2 * self._timeout if self._timeout else None)
            if self._thread.is_alive():
                log.error("%s: stopping without it", self._stall_message())
                error = StorageUnavailable(self._stall_message())
                for _, job in self._waiting:
                    if not job.future.done():
                        job.future.set_exception(error)
            self._thread = None
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None
        else:
            self._flush()
            while self._pending:  # a batch that found SQLite's write lock taken, retrying
                await asyncio.sleep(0.005)
            self._running = False
            self._release()
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.stop)

    def insert(
        self, table: Table, row: dict[str, Any], prepare: Callable[[dict[str, Any]], None] | None
    ) -> asyncio.Future[None]:
        """Insert `row` (after `prepare(row)`) with the next batch: the future is done once the
        row is durable. A future, not a coroutine: one frame less to resume on the click path."""
        return self._submit(_Job(future=self._new_future(), table=table, row=row, prepare=prepare))

    async def run(self, work: Callable[[Connection], Any]) -> Any:
        """Run `work(conn)` inside a savepoint of the next batch; return its result once durable.

        An exception from `work` rolls back only that work and is raised here after the commit.
        """
        return await self._submit(_Job(future=self._new_future(), work=work))

    def _new_future(self) -> asyncio.Future[Any]:
        assert self._loop is not None, "writer not started"
        return self._loop.create_future()

    def _submit(self, job: _Job) -> asyncio.Future[Any]:
        if not self._running:
            raise StorageUnavailable("the writer is not running")
        if self._on_loop:
            self._pending.append(job)
            self._schedule_flush()
        else:
            if self._timeout:
                if self._stalled:
                    raise StorageUnavailable(self._stall_message())
                self._waiting.append((time.monotonic(), job))
            with self._unbatched_lock:
                self._unbatched += 1
                unbatched = self._unbatched
            self._queue.put(job)
            if self._is_everyone_in(unbatched):
                self._everyone_in.set()
        return job.future

    def _watch_interval(self) -> float:
        assert self._timeout
        return min(0.25, self._timeout / 4)

    def _stall_message(self) -> str:
        return f"the database did not commit within {self._timeout:g} s"

    def _watch(self) -> None:
        """Fail every waiting request once the oldest has waited `timeout` for its commit."""
        assert self._loop is not None and self._timeout
        waiting = self._waiting
        while waiting and waiting[0][1].future.done():
            waiting.popleft()
        if waiting and time.monotonic() - waiting[0][0] > self._timeout:
            if not self._stalled:
                log.error("%s: answering 503 until it does", self._stall_message())
            self._stalled = True
            error = StorageUnavailable(self._stall_message())
            while waiting:
                job = waiting.popleft()[1]
                if not job.future.done():
                    job.future.set_exception(error)
        self._watchdog = self._loop.call_later(self._watch_interval(), self._watch)

    def _is_everyone_in(self, waiting: int) -> bool:
        """Whether `waiting` requests are all the process's connections (or a full batch)."""
        if waiting >= self._max_batch:
            return True
        open_connections = self._connections() if self._connections is not None else 0
        return 0 < open_connections <= waiting

    def _schedule_flush(self) -> None:
        """Commit at the loop's next turn; under load (the last batch had 5 or more requests)
        after `delay` instead, so that more requests join: each commit costs ~300 µs of CPU
        before its first row, and an fsync. Not later than once everyone is in."""
        assert self._loop is not None
        everyone_in = self._is_everyone_in(len(self._pending))
        if self._flush_handle is not None:
            if self._flush_is_soon or not everyone_in:
                return
            self._flush_handle.cancel()  # the timer: no need to wait for it any more
        elif not everyone_in and self._delay and self._previous >= _BUSY_BATCH:
            self._flush_handle = self._loop.call_later(self._delay, self._flush)
            self._flush_is_soon = False
            return
        self._flush_handle = self._loop.call_soon(self._flush)
        self._flush_is_soon = True

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        batch, self._pending = self._pending, []
        if batch:
            self._previous = len(batch)
            self._write(batch)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            if self._delay and self._previous >= _BUSY_BATCH:
                # Under load, let the event loop add requests (see _schedule_flush).
                self._everyone_in.wait(self._delay)
            self._everyone_in.clear()
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            with self._unbatched_lock:
                self._unbatched -= len(batch)
            # Requests already answered (503, by the watchdog) are not written after all.
            batch = [job for job in batch if not job.future.done()]
            self._previous = len(batch)
            if batch:
                self._write(batch)
        self._release()

    def _write(self, batch: list[_Job]) -> None:
        try:
            _prepare(batch)
            self._commit(batch)
        except Exception as exc:  # never leave callers waiting
            log.exception("writer batch failed")
            for job in batch:
                job.error = StorageUnavailable(f"writer failed: {exc}")
            self._resolve(batch)

    def _commit(self, jobs: list[_Job]) -> None:
        try:
            with self._connection() as conn, self._exclusive(), conn.begin():
                self._apply(conn, jobs)
        except (SQLAlchemyError, sqlite3.Error) as exc:  # sqlite3's own: the PRAGMAs
            if self._on_loop and _is_locked(exc) and self._retry_when_unlocked(jobs):
                return
            if len(jobs) > 1 and not _is_unavailable(exc):
                # One bad row must not fail its neighbours: retry each job alone.
                for job in jobs:
                    job.error = None
                    self._commit([job])
                return
            log.warning("batch of %d failed to commit: %s", len(jobs), exc)
            failure: BaseException = exc
            if _is_unavailable(exc):
                failure = StorageUnavailable(str(exc).splitlines()[0])
            for job in jobs:
                job.error = failure
        else:
            self._busy_retries = 0
            if self._checkpointer is not None:
                self._checkpointer.notify()
            try:
                self._fsync_wal()
            except OSError as exc:  # committed, but not known to be on disk: say so
                log.error("fsync after a commit failed: %s", exc)
                for job in jobs:
                    job.error = StorageUnavailable(f"fsync failed: {exc}")
        self._resolve(jobs)

    def _retry_when_unlocked(self, jobs: list[_Job]) -> bool:
        """Put `jobs` back to be committed after a pause, unless SQLite's write lock has been
        taken for `_BUSY_GIVE_UP` already. SQLite's busy handler would sleep on the loop."""
        assert self._loop is not None
        now = self._loop.time()
        if self._busy_retries == 0:
            self._busy_since = now
        elif now - self._busy_since > _BUSY_GIVE_UP:
            self._busy_retries = 0
            return False
        pause = _BUSY_PAUSES[min(self._busy_retries, len(_BUSY_PAUSES) - 1)]
        self._busy_retries += 1
        self._pending[:0] = jobs
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_later(pause, self._flush)
            self._flush_is_soon = False
        return True

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Connection]:
        """PostgreSQL: a pooled connection per batch. A SQLite file: the writer's own, kept open
        between batches, so that a batch spends nothing on checkout, reset or PRAGMAs, and at
        synchronous=NORMAL when the database is at FULL: the WAL frames are written but not
        fsynced while the writers' lock is held; `_fsync_wal` makes them durable after the lock
        is released and before anyone is answered. Same durability as FULL (a later batch's
        fsync covers every earlier frame), but the other processes' writers commit during this
        one's fsync instead of queueing behind it. Dropped on any error; the next batch
        reconnects."""
        if self._database_path is None:
            with self._engine.connect() as conn:
                yield conn
            return
        if self._own is None:
            conn = self._engine.connect()
            try:
                raw = conn.connection.driver_connection
                assert raw is not None
                raw.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's job
                if self._on_loop:  # see _retry_when_unlocked
                    raw.execute("PRAGMA busy_timeout=0")
                self._synchronous = int(raw.execute("PRAGMA synchronous").fetchone()[0])
                if self._synchronous >= _FULL:
                    raw.execute("PRAGMA synchronous=NORMAL")
            except BaseException:
                _discard(conn)
                raise
            self._own = conn
        try:
            yield self._own
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        """Discard the writer's own connection (never back into the pool at NORMAL)."""
        if self._own is not None:
            _discard(self._own)
            self._own = None
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None

    def _fsync_wal(self) -> None:
        if self._database_path is None or (self._synchronous or 0) < _FULL:
            return
        if self._wal_fd is None:
            # Kept while the writer's connection is open: SQLite deletes the WAL only when its
            # last connection closes. Without a WAL, its last connection closed and
            # checkpointed it into the database file: sync that.
            try:
                self._wal_fd = os.open(f"{self._database_path}-wal", os.O_RDONLY)
            except FileNotFoundError:
                fd = os.open(self._database_path, os.O_RDONLY)
                try:
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
                return
        try:
            os.fdatasync(self._wal_fd)
        except OSError:
            self._release()  # start over with a new connection and descriptor
            raise

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """On a SQLite file, take a lock that the writers of all server processes share first.

        With several workers, each process's writer contends for SQLite's write lock, and
        SQLite's busy handler polls it with sleeps of 1, 2, 5, 10… ms: the waiter oversleeps the
        holder's commit, which made p99 latency jump. A blocking flock() wakes the next writer
        as soon as the lock is free. Without a usable lock file this falls back to busy_timeout.
        """
        if self._lock_path is None:
            yield
            return
        if self._lock_fd is None:
            try:
                self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                yield
                return
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _apply(self, conn: Connection, jobs: list[_Job]) -> None:
        # Rows with the same columns are inserted together: on SQLite in multi-row INSERTs (one
        # sqlite3 step, so one GIL hand-over, per statement), on PostgreSQL in one executemany.
        rows_by_table: dict[Table, list[dict[str, Any]]] = {}
        for job in jobs:
            if job.work is not None:
                try:
                    with conn.begin_nested():
                        job.result = job.work(conn)
                except SQLAlchemyError as exc:
                    if _is_unavailable(exc):
                        raise
                    job.error = exc
                except Exception as exc:  # the caller gets its own error back
                    job.error = exc
            else:
                assert job.table is not None and job.row is not None
                rows_by_table.setdefault(job.table, []).append(job.row)
        rows_by_shape: dict[tuple[Table, tuple[str, ...]], list[dict[str, Any]]] = {}
        for table, rows in rows_by_table.items():
            if self._before_insert is not None:
                self._before_insert(conn, table, rows)
            for row in rows:
                rows_by_shape.setdefault((table, tuple(row)), []).append(row)
        for (table, columns), rows in rows_by_shape.items():
            if not all(column in table.c for column in columns):
                conn.execute(table.insert(), rows)  # Core raises the error the caller gets
            elif conn.dialect.name == "sqlite":
                try:
                    for _ in sqlite_rows.insert_rows(conn, table, columns, rows):
                        pass
                except sqlite3.Error as exc:  # as SQLAlchemy's own (IntegrityError, …)
                    raise DBAPIError.instance(None, None, exc, sqlite3.Error) from exc
            else:
                self._postgresql_insert(conn, table, columns, rows)

    def _postgresql_insert(
        self, conn: Connection, table: Table, columns: tuple[str, ...], rows: list[dict[str, Any]]
    ) -> None:
        key = (table, columns)
        if key not in self._inserts:
            if len(self._inserts) >= _MAX_CACHED_INSERTS:
                self._inserts.clear()
            self._inserts[key] = _Insert.compile(table, columns, conn.dialect)
        statement = self._inserts[key]
        if statement is None:
            conn.execute(table.insert(), rows)
        else:
            conn.exec_driver_sql(statement.sql, statement.parameters(rows))

    def _resolve(self, jobs: list[_Job]) -> None:
        assert self._loop is not None
        if self._on_loop:
            _settle(jobs)
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._settle_returned, jobs)

    def _settle_returned(self, jobs: list[_Job]) -> None:
        """On the loop: a batch returned from the database, so it answers again."""
        self._stalled = False
        _settle(jobs)


@dataclass(frozen=True, slots=True)
class _Insert:
    """An INSERT of given columns compiled once for a dialect, and how to turn rows into its
    DBAPI parameters: the columns' own bind processors (Money to micros, UTC datetimes, JSON)
    applied by hand, which costs a fraction of a Core `execute(insert, rows)` per row. For
    PostgreSQL, where psycopg pipelines the executemany; SQLite takes `sqlite_rows`."""

    sql: str
    positional: bool
    keys: tuple[str, ...]  # in parameter order
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]  # (index in keys, processor)

    @classmethod
    def compile(cls, table: Table, keys: tuple[str, ...], dialect: Dialect) -> _Insert | None:
        """The statement for rows with exactly `keys`, or None when Core must run it: when a
        column default would put other parameters in the statement."""
        compiled = table.insert().compile(dialect=dialect, column_keys=list(keys))
        order = tuple(compiled.positiontup or ()) if compiled.positional else keys
        if sorted(order) != sorted(keys) or set(compiled.binds) != set(keys):
            return None
        processors = []
        for index, key in enumerate(order):
            processor = table.c[key].type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors.append((index, processor))
        return cls(
            sql=compiled.string,
            positional=compiled.positional,
            keys=order,
            processors=tuple(processors),
        )

    def parameters(self, rows: list[dict[str, Any]]) -> list[Any]:
        get = itemgetter(*self.keys)
        params: list[Any] = []
        for row in rows:
            values = get(row) if len(self.keys) > 1 else (row[self.keys[0]],)
            if self.processors:
                converted = list(values)
                for index, processor in self.processors:
                    converted[index] = processor(converted[index])
                values = tuple(converted)
            params.append(values if self.positional else dict(zip(self.keys, values, strict=True)))
        return params


def _prepare(jobs: list[_Job]) -> None:
    """Derive the rows' optional fields before the batch takes the writers' lock: an uncached
    user agent costs ~70 µs to parse, which the other processes' writers need not wait for."""
    for job in jobs:
        if job.prepare is not None:
            assert job.table is not None and job.row is not None
            try:
                job.prepare(job.row)
            except Exception:  # derived fields are optional; the row is not
                log.exception("preparing a %s row failed", job.table.name)


def _settle(jobs: list[_Job]) -> None:
    for job in jobs:
        if job.future.done():
            continue
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)


def _discard(conn: Connection) -> None:
    """Close `conn` for good: invalidated, its DBAPI connection never goes back to the pool."""
    with contextlib.suppress(Exception):
        conn.invalidate()
    with contextlib.suppress(Exception):
        conn.close()


def _sqlite_database_path(engine: Engine) -> str | None:
    """The SQLite database file (None for other databases and in-memory SQLite)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return url.database


def _is_locked(exc: Exception) -> bool:
    """SQLITE_BUSY: another connection holds the database's write lock."""
    return "database is locked" in str(getattr(exc, "orig", exc)).lower()


def _is_unavailable(exc: Exception) -> bool:
    """Errors that mean the database cannot take writes now, as opposed to a bad row."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    text = str(getattr(exc, "orig", exc)).lower()
    return any(
        marker in text
        for marker in (
            "database is locked",
            "disk i/o error",
            "unable to open database",
            "readonly database",
            "database or disk is full",
            "connection",
            "server closed",
            "terminating",
            "could not",
            "no such table",
            "file is not a database",
            "malformed",
        )
    )
