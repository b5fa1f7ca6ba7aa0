"""A full disk under a real two-worker server on SQLite: every request is answered (302/200 or
503), no worker dies, and once space returns the server takes writes again and nothing
acknowledged is missing. The database lives on a small tmpfs mounted for the test."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from clickloop.services.entities import ensure_settings, get_settings
from clickloop.storage import tables as t
from clickloop.storage.db import make_engine, upgrade
from tests.conftest import Server, server_on
from tests.e2e.test_clicks import make_campaign, wait_for_link

pytestmark = pytest.mark.slow

DISK_BYTES = 64 * 1024 * 1024
CLICKERS = 6
POSTERS = 3
FILLS = 6  # each finds the WAL and the checkpoints at another point
FULL_SECONDS = 3.0
RECOVERY_SECONDS = 15.0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs of the test's own, unmounted afterwards."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("mounting a small file system needs Linux and root")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


class Traffic:
    """Clients sending clicks and postbacks until stopped, and what they were answered."""

    def __init__(self, port: int, key: str, subid: str) -> None:
        self.port = port
        self.key = key
        self.subid = subid  # every postback converts this click, each with its own tid
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: Counter[tuple[str, int]] = Counter()
        self.unanswered: list[str] = []
        self.clicks: list[str] = []  # subids acknowledged by a 302
        self.postbacks: list[str] = []  # tids acknowledged by a 200 OK
        self.last_success: dict[str, float] = {}
        self.threads = [
            threading.Thread(target=self._click, args=(n,)) for n in range(CLICKERS)
        ] + [threading.Thread(target=self._post_back, args=(n,)) for n in range(POSTERS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def succeeded_since(self, moment: float) -> bool:
        with self.lock:
            return all(self.last_success.get(kind, 0.0) > moment for kind in ("click", "postback"))

    def _get(self, kind: str, target: str) -> tuple[int, str, bytes] | None:
        """The status, Set-Cookie and body of a GET; None (and recorded) without an answer."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", target)
            answer = conn.getresponse()
            body = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            with self.lock:
                self.unanswered.append(f"{kind} {target}: {exc!r}")
            return None
        finally:
            conn.close()
        with self.lock:
            self.answers[(kind, answer.status)] += 1
        return answer.status, answer.getheader("set-cookie") or "", body

    def _click(self, client: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            answer = self._get("click", f"/go?clickid=c{client}-{n}&zone={'z' * 200}")
            if answer is not None and answer[0] == 302:
                cookie = answer[1]
                with self.lock:
                    self.clicks.append(cookie.split(";", 1)[0].removeprefix("_subid="))
                    self.last_success["click"] = time.monotonic()

    def _post_back(self, client: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            tid = f"p{client}-{n}"
            answer = self._get(
                "postback",
                f"/{self.key}/postback?subid={self.subid}&status=lead&payout=1&tid={tid}",
            )
            if answer is not None and answer[0] == 200:
                with self.lock:
                    if answer[2] != b"OK":  # fails the test: only OK acknowledges
                        self.answers[(f"postback {answer[2]!r}", 200)] += 1
                        continue
                    self.postbacks.append(tid)
                    self.last_success["postback"] = time.monotonic()


def _fill(directory: Path) -> Path:
    """Write a file until the file system has no byte left; return it."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out:
        for chunk in (1 << 20, 4096, 512, 1):
            try:
                while True:
                    out.write(b"\0" * chunk)
            except OSError:
                continue
    return filler


def _workers(server: Server) -> set[int]:
    assert server.process is not None
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(child) for child in children.split()}


def test_full_disk_answers_503_and_no_worker_dies(small_disk: Path, tmp_path: Path) -> None:
    """Filling the disk under 2 workers gives 503s, never a crash, and loses nothing."""
    url = f"sqlite:///{small_disk / 'clickloop.db'}"
    engine = make_engine(url)
    upgrade(engine)
    ensure_settings(engine)
    make_campaign(engine)
    key = str(get_settings(engine)["postback_key"])
    # No connection stays open in this process: a real deployment has none here, and one would
    # hold SQLite's locks on the database on the server's behalf.
    engine.dispose()
    server = server_on(
        url,
        tmp_path,
        {
            "CLICKLOOP_LOG_LEVEL": "info",  # so that the log says when a worker died
            "CLICKLOOP_WORKERS": "2",
            "PYTHONFAULTHANDLER": "1",  # a worker killed by a signal says where
        },
    )
    port = server.port
    traffic: Traffic | None = None
    try:
        server.start()
        wait_for_link(server, "go")
        workers = _workers(server)
        first = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        first.request("GET", "/go?clickid=first")
        answer = first.getresponse()
        answer.read()
        first.close()
        assert answer.status == 302
        subid = (answer.getheader("set-cookie") or "").split(";", 1)[0].removeprefix("_subid=")
        traffic = Traffic(port, key, subid)
        traffic.start()
        time.sleep(1)
        recovered = []
        for _ in range(FILLS):
            filler = _fill(small_disk)
            time.sleep(FULL_SECONDS)
            filler.unlink()
            freed = time.monotonic()
            while (
                not traffic.succeeded_since(freed) and time.monotonic() < freed + RECOVERY_SECONDS
            ):
                time.sleep(0.1)
            recovered.append(traffic.succeeded_since(freed))
        traffic.join()
        log = server.log_path.read_text(errors="replace")
        assert server.process is not None and server.process.poll() is None
        crash = log[log.find("Fatal Python error") :][:3000] if "Fatal Python error" in log else ""
        assert _workers(server) == workers, crash or log[-3000:]
        assert "died" not in log and not crash, crash
        assert not traffic.unanswered, traffic.unanswered[:5]
        answered = set(traffic.answers)
        assert answered <= {("click", 302), ("click", 503), ("postback", 200), ("postback", 503)}
        assert ("click", 503) in answered and ("postback", 503) in answered  # the disk was full
        assert all(recovered), f"after space returned: {recovered}, {traffic.answers}"
    finally:
        if traffic is not None:
            traffic.join()
        server.stop()
    engine = make_engine(url)
    with engine.connect() as conn:
        stored_clicks = set(conn.scalars(select(t.clicks.c.subid)))
        stored_tids = set(conn.scalars(select(t.conversions.c.tid)))
    engine.dispose()
    assert not set(traffic.clicks) - stored_clicks
    assert not set(traffic.postbacks) - stored_tids
