"""WAL checkpoints on a SQLite file: by their own thread, beside the writers, WAL kept bounded."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from clickloop.storage import tables as t
from clickloop.storage.checkpoints import WalCheckpointer, open_wal_index, read_wal_frames
from clickloop.storage.db import make_engine, upgrade
from clickloop.storage.sqlite_driver import sqlite3
from clickloop.storage.writer import GroupCommitWriter
from tests.integration.test_writer import click_row, queue_behind_gate

PAGE = 4096


@contextlib.contextmanager
def writers_lock(database: Path) -> Iterator[None]:
    """The lock the server processes' writers share, taken as another process would."""
    fd = os.open(f"{database}-writer.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def wal_frames(database: Path) -> tuple[int, int]:
    """(pages in the WAL, pages of them copied into the database), without checkpointing."""
    return read_wal_frames(open_wal_index(str(database)))


def test_commits_leave_checkpoints_to_the_checkpointer_which_needs_no_lock(
    tmp_path: Path,
) -> None:
    """A commit that takes the WAL past 1000 pages does not copy it back (SQLite's automatic
    checkpoint would, holding every writer up); the checkpointer does, moments later, while
    another process's writer holds the writers' lock."""
    database = tmp_path / "clicks.db"
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    rows = [click_row(f"c{n:04d}", user_agent="x" * 3000) for n in range(1500)]  # a page each

    async def scenario() -> tuple[tuple[int, int], float]:
        writer = GroupCommitWriter(engine, checkpoint_interval=1.0)
        writer.start()
        try:
            await queue_behind_gate(
                writer,
                lambda: [asyncio.ensure_future(writer.insert(t.clicks, r, None)) for r in rows],
            )
            after_commit = wal_frames(database)
            with writers_lock(database):
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    frames, copied = wal_frames(database)
                    if copied == frames:
                        break
                    await asyncio.sleep(0.02)
                return after_commit, deadline - time.monotonic()
        finally:
            await writer.stop()

    (frames, copied), time_left = asyncio.run(scenario())
    assert frames > 1500 and copied == 0
    assert time_left > 0, "the WAL was not copied into the database"
    engine.dispose()


def test_a_small_wal_is_left_alone(tmp_path: Path) -> None:
    """Below the threshold nothing is copied: one checkpoint serves many commits."""
    database = tmp_path / "quiet.db"
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    checkpointer = WalCheckpointer(str(database), f"{database}-writer.lock", interval=0.001)
    checkpointer.start()
    try:
        for _ in range(100):
            conn.execute("INSERT INTO t (v) VALUES (?)", ("x" * 3000,))
            checkpointer.notify()
        time.sleep(0.1)
        frames, copied = wal_frames(database)
    finally:
        checkpointer.stop()
        conn.close()
    assert frames >= 100 and copied == 0


# Another server process's writer: commits back to back, each under the writers' lock.
BUSY_WRITER = """
import fcntl, os, sys, time
from clickloop.storage.sqlite_driver import sqlite3
database, commits = sys.argv[1], int(sys.argv[2])
conn = sqlite3.connect(database, isolation_level=None)
conn.execute("PRAGMA wal_autocheckpoint=0")
lock = os.open(database + "-writer.lock", os.O_RDWR | os.O_CREAT)
for _ in range(commits):
    fcntl.flock(lock, fcntl.LOCK_EX)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO t (v) VALUES (?)", ("x" * 3000,))  # a page a commit
    conn.execute("COMMIT")
    fcntl.flock(lock, fcntl.LOCK_UN)
    time.sleep(0.0002)  # where a clickloop writer fsyncs the WAL, after releasing the lock
"""


def test_the_wal_stays_bounded_under_commits_without_pause(tmp_path: Path) -> None:
    """Another process committing back to back leaves a PASSIVE checkpoint no moment to bring
    the WAL back to its start; the checkpointer's pass under the writers' lock does, so the WAL
    file stays near `restart_frames` pages instead of growing with every commit."""
    database = tmp_path / "busy.db"
    setup = sqlite3.connect(database, isolation_level=None)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    setup.close()
    checkpointer = WalCheckpointer(
        str(database), f"{database}-writer.lock", interval=0.001, restart_frames=64
    )
    checkpointer.start()
    wal_pages = 0  # the most the WAL file held while the writer ran
    try:
        writer = subprocess.Popen([sys.executable, "-c", BUSY_WRITER, str(database), "4000"])
        while writer.poll() is None:
            checkpointer.notify()
            with contextlib.suppress(FileNotFoundError):
                wal_pages = max(wal_pages, os.path.getsize(f"{database}-wal") // PAGE)
            time.sleep(0.001)
        assert writer.returncode == 0
    finally:
        checkpointer.stop()
    with contextlib.closing(sqlite3.connect(database)) as check:
        assert check.execute("SELECT count(*) FROM t").fetchone()[0] == 4000
    # Without the locked pass it grows to ~12,000 pages here. Without the writer's pause after
    # the lock, flock's unfair hand-over let it take the lock back before the waiting
    # checkpointer for thousands of commits on some VMs (WAL of 5,000 pages, 2 runs in 5).
    assert wal_pages < 4000, f"the WAL grew to {wal_pages} pages for 4000 commits"


# What SQLite's next connection in another process asks before it opens the WAL index: who holds
# a lock on its "DMS" byte (128, after the 8 lock bytes at 120). Nobody means "I am the first",
# and the first truncates the index.
DMS_HOLDER = """
import fcntl, os, struct, sys
FLOCK = "hhqqixxxx"  # struct flock on Linux
fd = os.open(sys.argv[1], os.O_RDWR)
answer = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 128, 1, 0))
kind, _, _, _, pid = struct.unpack(FLOCK, answer)
print("nobody" if kind == fcntl.F_UNLCK else pid)
"""


def dms_holder(database: Path) -> str:
    """Which process another process sees holding SQLite's lock on the WAL index's DMS byte."""
    return subprocess.run(
        [sys.executable, "-c", DMS_HOLDER, f"{database}-shm"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_the_checkpointer_leaves_sqlite_its_lock_on_the_wal_index(tmp_path: Path) -> None:
    """After a checkpointer's connection closes (on a failed pass, as a full disk fails them
    all, or on stop), the process still holds SQLite's lock on the WAL index, so another
    process's next connection does not truncate the index under this one's mapping (SIGBUS)."""
    database = tmp_path / "locks.db"
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    assert dms_holder(database) == str(os.getpid())
    checkpointer = WalCheckpointer(
        str(database), f"{database}-writer.lock", interval=0.001, checkpoint_frames=1
    )
    checkpointer.start()
    try:
        conn.execute("INSERT INTO t (v) VALUES ('x')")
        deadline = time.monotonic() + 10
        while wal_frames(database)[1] == 0 and time.monotonic() < deadline:
            checkpointer.notify()
            time.sleep(0.005)
        assert wal_frames(database)[1] > 0, "the checkpointer never checkpointed"
    finally:
        checkpointer.stop()
    assert dms_holder(database) == str(os.getpid())
    conn.execute("INSERT INTO t (v) VALUES ('y')")
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 2
    conn.close()
