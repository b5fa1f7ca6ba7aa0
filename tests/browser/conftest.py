"""Browser fixtures: Debian's Chromium (installed with apt-get when missing) driven by Playwright,
an admin user on the test server, and a local HTTP endpoint that records S2S postbacks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking switches Chromium's own connections are refused here and
# page loads stall; the rest keep a headless run quiet and deterministic.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).parent / "screenshots"
ADMIN_USER = "admin"
ADMIN_PASSWORD = "browser-test-pass"


def _install_chromium() -> str | None:
    """Install Chromium with apt-get; the reason it could not be, or None when it is there."""
    if Path(CHROMIUM).exists():
        return None
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return f"{CHROMIUM} is missing and apt-get cannot run here (install the chromium package)"
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            return f"`{' '.join(command)}` failed: {done.stderr.strip()[-300:]}"
    return None if Path(CHROMIUM).exists() else f"{CHROMIUM} still missing after apt-get"


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of Debian's Chromium, installed when missing (or the tests skip, saying why)."""
    problem = _install_chromium()
    if problem:
        pytest.skip(problem)
    return CHROMIUM


@pytest.fixture
def browser(chromium: str) -> Iterator[Any]:
    """A headless Chromium for one test.

    Per test, not per session: Playwright's sync API runs an event loop in the main thread
    while it is open, and a session-wide one would break every later test using asyncio.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def log_in(
    page: Any, server: Server, username: str = ADMIN_USER, password: str = ADMIN_PASSWORD
) -> str:
    """Log `page` in through the login form; the admin's base URL (the dashboard opened)."""
    admin_url = f"{server.base_url}/admin"
    page.goto(f"{admin_url}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button:has-text('Log in')")
    assert page.url == f"{admin_url}/"
    return admin_url


@pytest.fixture
def admin(server: Server) -> Server:
    """The test server with an admin user created through the CLI."""
    done = subprocess.run(
        [sys.executable, "-m", "clickloop.cli", "user", "create", ADMIN_USER, "--password-stdin"],
        input=ADMIN_PASSWORD + "\n",
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return server


class Recorder(ThreadingHTTPServer):
    """A local HTTP server that answers OK and keeps every request path it got."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.paths: list[str] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _RecordingHandler(BaseHTTPRequestHandler):
    server: Recorder

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        body = b"<!doctype html><title>Offer</title><h1>Offer page</h1>OK"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """A recording endpoint on 127.0.0.1 that plays the offer page and the S2S target."""
    instance = Recorder()
    thread = threading.Thread(target=instance.serve_forever, daemon=True)
    thread.start()
    yield instance
    instance.shutdown()
    instance.server_close()
