"""WAL checkpoints on a SQLite file, off the commit path.

SQLite copies the WAL back into the database file (a checkpoint) inside the commit that takes
the WAL past 1000 pages, so that commit holds the writers' lock for the copy and two fsyncs
while every server process's writer waits. The group-commit writer's connection therefore does
not checkpoint; this thread does, on its own connection, once as many pages wait, with PASSIVE
checkpoints, which take no write lock and copy beside the writers' commits.

A PASSIVE checkpoint cannot bring the WAL back to its start while commits keep arriving, so
once the WAL holds `restart_frames` pages the thread takes the writers' lock for one more
checkpoint of the few pages committed meanwhile: the next commit then writes the WAL from its
start again, and the file stays at about `restart_frames` pages.

The trigger reads the WAL index (`-shm`) through a descriptor that is never closed while it
names the index (`open_wal_index`): see there why.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import threading
from collections.abc import Iterator

from clickloop.storage.sqlite_driver import sqlite3

log = logging.getLogger(__name__)

CHECKPOINT_FRAMES = 1000  # SQLite's own automatic checkpoint threshold
RESTART_FRAMES = 4096  # 16 MB of 4 KB pages

# Descriptors of the WAL indexes this process reads, by path. Closing any descriptor of a file
# drops every POSIX lock the process holds on it, SQLite's own included: its shared lock on the
# index's "DMS" byte, which tells other processes that the index is in use. A checkpointer that
# closed its descriptor after each failed pass (a full disk fails every pass) left both server
# processes without that lock; the next connection opened in either took itself for the first
# and truncated the index under the other's mapping of it, which then died of SIGBUS.
_indexes: dict[str, int] = {}
_indexes_lock = threading.Lock()


class WalCheckpointer:
    """Checkpoints `database_path` shortly after it is told of commits, until stopped."""

    def __init__(
        self,
        database_path: str,
        lock_path: str,
        *,
        interval: float = 0.02,
        checkpoint_frames: int = CHECKPOINT_FRAMES,
        restart_frames: int = RESTART_FRAMES,
    ) -> None:
        self._database_path = database_path
        self._lock_path = lock_path
        self._interval = interval
        self._checkpoint_frames = checkpoint_frames
        self._restart_frames = restart_frames
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """Something was committed: look at the WAL within `interval`."""
        self._wake.set()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join()
        self._thread = None

    def _run(self) -> None:
        opened: tuple[sqlite3.Connection, int] | None = None
        try:
            while not self._stop.is_set():  # after each pass: `clear` may eat stop's wake
                self._wake.wait()
                if self._stop.wait(self._interval):  # one look for a moment's commits
                    return
                self._wake.clear()
                try:
                    opened = opened or self._open()
                    self._checkpoint(*opened)
                except Exception as exc:  # the next commit tries again
                    log.warning("WAL checkpoint failed: %s", exc)
                    _close(opened)
                    opened = None
        finally:
            _close(opened)

    def _open(self) -> tuple[sqlite3.Connection, int]:
        """A connection, which keeps the WAL and its index open, and the index's descriptor."""
        conn = sqlite3.connect(self._database_path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA schema_version").fetchone()  # opens the WAL index
            return conn, open_wal_index(self._database_path)
        except BaseException:
            conn.close()
            raise

    def _checkpoint(self, conn: sqlite3.Connection, index: int) -> None:
        frames, copied = read_wal_frames(index)
        if frames - copied < self._checkpoint_frames:
            return
        _busy, frames, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if frames >= self._restart_frames:
            with self._writers_lock():
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    @contextlib.contextmanager
    def _writers_lock(self) -> Iterator[None]:
        # An open file description of its own: the writer thread's, in this same process,
        # would not exclude this one.
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock


def open_wal_index(database_path: str) -> int:
    """A read-only descriptor of the WAL index of `database_path`, shared in the process and
    never closed while the index is that file (see `_indexes`)."""
    path = f"{database_path}-shm"
    with _indexes_lock:
        index = _indexes.get(path)
        if index is not None and _names(path, index):
            return index
        for known, descriptor in list(_indexes.items()):
            # An index deleted (or replaced) by SQLite, which does so only when no connection is
            # left to it in any process: nothing holds a lock on the file it was.
            if not _names(known, descriptor):
                os.close(descriptor)
                del _indexes[known]
        index = os.open(path, os.O_RDONLY)
        _indexes[path] = index
        return index


def _names(path: str, descriptor: int) -> bool:
    """Whether `path` is the file open as `descriptor`."""
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(descriptor)
    return (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino)


def read_wal_frames(index: int) -> tuple[int, int]:
    """The pages in the WAL and how many of them are copied into the database, read from the
    WAL index (`-shm`: mxFrame at byte 16, nBackfill at byte 96, native byte order; see
    sqlite.org/walformat.html) without a query. Only a trigger: a torn read moves a checkpoint."""
    header = os.pread(index, 100, 0)
    if len(header) < 100:
        return 0, 0
    (frames,) = struct.unpack_from("=I", header, 16)
    (copied,) = struct.unpack_from("=I", header, 96)
    return frames, copied


def _close(opened: tuple[sqlite3.Connection, int] | None) -> None:
    if opened is not None:
        opened[0].close()  # and not the index's descriptor: see `_indexes`
