"""Shared fixtures: a migrated database on SQLite and (when configured) PostgreSQL, and a real
`clickloop serve` process on a free port for end-to-end tests.

PostgreSQL runs when CLICKLOOP_TEST_DATABASE_URL names a server (CI sets it); each test gets its
own database cloned from a migrated template, so tests and parallel runs never share state.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from clickloop.services.entities import ensure_settings
from clickloop.storage.db import make_engine, upgrade

PG_ENV = "CLICKLOOP_TEST_DATABASE_URL"
PG_SKIP_REASON = (
    f"PostgreSQL tests skipped: set {PG_ENV} (e.g. postgresql://postgres@127.0.0.1/test)"
)


def pytest_report_header() -> str:
    url = os.environ.get(PG_ENV)
    return f"PostgreSQL: {url}" if url else PG_SKIP_REASON


def _pg_admin(url: str) -> Any:
    import psycopg

    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


def _pg_url_for(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database used as the template of each test's database."""
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(PG_SKIP_REASON)
    name = f"clickloop_tpl_{secrets.token_hex(4)}"
    with _pg_admin(url) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    engine = make_engine(_pg_url_for(url, name))
    upgrade(engine)
    engine.dispose()
    yield name
    with _pg_admin(url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database file, copied for each test (migrating costs ~0.1 s a test)."""
    path = tmp_path_factory.mktemp("template") / "clickloop.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@contextmanager
def new_database(kind: str, directory: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated, empty database URL of `kind` ("sqlite" in `directory`, or "postgresql"),
    copied or cloned from the session's template, dropped afterwards."""
    if kind == "sqlite":
        path = directory / "clickloop.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    template = request.getfixturevalue("pg_template")
    server = os.environ[PG_ENV]
    name = f"clickloop_t_{secrets.token_hex(6)}"
    with _pg_admin(server) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield _pg_url_for(server, name)
    with _pg_admin(server) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database URL: SQLite always, PostgreSQL when configured."""
    with new_database(request.param, tmp_path, request) as url:
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on a migrated database with default settings written."""
    engine = make_engine(database_url)
    ensure_settings(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`database_url` shared by a module's tests: for tests that only read or are refused
    (bad input), which need not pay a database and a server each."""
    with new_database(request.param, tmp_path_factory.mktemp("db"), request) as url:
        yield url


@pytest.fixture(scope="module")
def module_engine(module_database_url: str) -> Iterator[Engine]:
    engine = make_engine(module_database_url)
    ensure_settings(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def module_server(
    module_database_url: str, module_engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """`server` shared by a module's tests (over `module_database_url`, default settings)."""
    instance = server_on(module_database_url, tmp_path_factory.mktemp("server"), {})
    instance.start()
    yield instance
    instance.stop()


@contextmanager
def http_endpoint(answer: Callable[[BaseHTTPRequestHandler], tuple[int, bytes]]) -> Iterator[str]:
    """A local HTTP server whose every GET is answered with `answer(request)` (status, body);
    yields its base URL (http://127.0.0.1:PORT)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answer(self)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running `clickloop serve` process."""

    base_url: str
    port: int
    data_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=Path)

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "clickloop.cli", "serve"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "clickloop.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )


def server_on(database_url: str, tmp_path: Path, env: dict[str, str]) -> Server:
    """A `clickloop serve` (not started yet) on a free port over `database_url`, with its data
    directory and log under `tmp_path` and `env` on top of the test settings."""
    port = free_port()
    return Server(
        base_url=f"http://127.0.0.1:{port}",
        port=port,
        data_dir=tmp_path / "data",
        env={
            **os.environ,
            "CLICKLOOP_DATABASE_URL": database_url,
            "CLICKLOOP_DATA_DIR": str(tmp_path / "data"),
            "CLICKLOOP_PORT": str(port),
            "CLICKLOOP_LOG_LEVEL": "warning",
            # No test reaches the internet; tests of the daily update turn it on with a local URL.
            "CLICKLOOP_RATES_AUTO_UPDATE": "off",
            **env,
        },
        log_path=tmp_path / "server.log",
    )


@pytest.fixture
def server_env() -> dict[str, str]:
    """More settings for `server`; a test module overrides this fixture to change them."""
    return {}


@pytest.fixture
def server(
    database_url: str, tmp_path: Path, engine: Engine, server_env: dict[str, str]
) -> Iterator[Server]:
    """A real clickloop server process on a free port, over the test database."""
    instance = server_on(database_url, tmp_path, server_env)
    instance.start()
    yield instance
    instance.stop()
