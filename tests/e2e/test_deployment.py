"""The shipped deployment files: clickloop behind the real nginx with deploy/nginx.conf, the
systemd unit, the built wheel, and the container image where this machine can build one."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.storage import tables as t
from tests.conftest import Server, free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NGINX = "/usr/sbin/nginx"
LETSENCRYPT = "/etc/letsencrypt/live/track.example.com"
NOW = datetime(2026, 11, 1, tzinfo=UTC)

pytestmark = pytest.mark.slow


def _require_nginx() -> None:
    """Install Debian's nginx when missing, as CI's fresh machine needs; skip if that fails."""
    if Path(NGINX).exists():
        return
    if shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "nginx"], capture_output=True, timeout=300
        )
    if not Path(NGINX).exists():
        pytest.skip("nginx is not installed and apt-get could not install it")


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Proxy:
    """nginx running deploy/nginx.conf in front of a clickloop server, on two local ports."""

    def __init__(self, http_port: int, https_port: int) -> None:
        self.http_port = http_port
        self.https_port = https_port

    def request(
        self,
        path: str,
        *,
        https: bool = False,
        source: str = "127.0.0.1",
        headers: dict[str, str] | None = None,
    ) -> http.client.HTTPResponse:
        if https:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                "127.0.0.1",
                self.https_port,
                timeout=10,
                context=context,
                source_address=(source, 0),
            )
        else:
            conn = http.client.HTTPConnection(
                "127.0.0.1", self.http_port, timeout=10, source_address=(source, 0)
            )
        conn.request("GET", path, headers=headers or {})
        answer = conn.getresponse()
        answer.read()
        conn.close()
        return answer


@pytest.fixture
def proxy(server: Server, tmp_path: Path) -> Iterator[Proxy]:
    """The shipped nginx config with only its ports, upstream and certificate paths changed."""
    _require_nginx()
    directory = tmp_path / "nginx"
    directory.mkdir()
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=track.example.com",
            "-keyout",
            str(directory / "key.pem"),
            "-out",
            str(directory / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    http_port, https_port = free_port(), free_port()
    site = (
        (DEPLOY / "nginx.conf")
        .read_text()
        .replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{server.port};")
        .replace("listen 80;", f"listen 127.0.0.1:{http_port};")
        .replace("listen 443 ssl", f"listen 127.0.0.1:{https_port} ssl")
        .replace(f"{LETSENCRYPT}/fullchain.pem", str(directory / "cert.pem"))
        .replace(f"{LETSENCRYPT}/privkey.pem", str(directory / "key.pem"))
    )
    (directory / "site.conf").write_text(site)
    (directory / "nginx.conf").write_text(
        f"""
worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {directory};
  proxy_temp_path {directory};
  fastcgi_temp_path {directory};
  uwsgi_temp_path {directory};
  scgi_temp_path {directory};
  include {directory}/site.conf;
}}
"""
    )
    process = subprocess.Popen(
        [NGINX, "-c", str(directory / "nginx.conf"), "-p", str(directory)],
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_port(https_port)
        yield Proxy(http_port, https_port)
    finally:
        process.terminate()
        process.wait(10)


def _campaign(engine: Engine) -> None:
    source = entities.create_traffic_source(
        engine,
        name="Source",
        now=NOW,
        parameters=[{"name": "external_id", "param": "clickid", "macro": "{click_id}"}],
    )
    offer = entities.create_offer(engine, name="Offer", url="https://offer.example/lp", now=NOW)
    entities.create_campaign(
        engine, name="C", alias="go", now=NOW, offers=[(offer, 1)], traffic_source_id=source
    )


def test_behind_nginx_the_visitor_address_is_recorded_and_cannot_be_forged(
    server: Server, engine: Engine, proxy: Proxy
) -> None:
    """A click through nginx records the visitor's own address, not one they put in a header."""
    _campaign(engine)
    time.sleep(1.2)  # the server's config poll sees the new campaign
    answer = proxy.request(
        "/go?clickid=through-nginx", source="127.0.0.2", headers={"X-Forwarded-For": "6.6.6.6"}
    )
    assert answer.status == 302
    with engine.connect() as conn:
        ip = conn.execute(
            select(t.clicks.c.ip).where(t.clicks.c.external_id == "through-nginx")
        ).scalar_one()
    assert ip == "127.0.0.2"


def test_behind_nginx_a_long_campaign_link_is_not_refused(
    server: Server, engine: Engine, proxy: Proxy
) -> None:
    """Neither nginx's header limit nor httptools' 64 KiB URL limit refuses a link a source
    made long (100 KiB)."""
    _campaign(engine)
    time.sleep(1.2)
    answer = proxy.request("/go?clickid=long&pad=" + "x" * 100_000, https=True)
    assert answer.status == 302


def test_behind_nginx_the_admin_cookie_is_secure_and_http_is_redirected(
    server: Server, proxy: Proxy
) -> None:
    """Over https the admin session cookie is `Secure`; the admin UI on http redirects to https."""
    answer = proxy.request("/admin/login", https=True)
    assert answer.status == 200
    cookie = answer.getheader("set-cookie") or ""
    assert "clickloop_admin=" in cookie
    assert "secure" in cookie.lower()
    plain = proxy.request("/admin/login")
    assert plain.status == 301
    assert (plain.getheader("location") or "").startswith("https://")


def test_systemd_unit_is_valid(tmp_path: Path) -> None:
    """`systemd-analyze verify` finds nothing wrong in deploy/clickloop.service."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    unit = (DEPLOY / "clickloop.service").read_text()
    assert "ExecStart=/opt/clickloop/bin/clickloop serve" in unit
    checked = tmp_path / "clickloop.service"
    # verify insists that the executables exist: point them at one that does.
    checked.write_text(unit.replace("/opt/clickloop/bin/clickloop", "/bin/true"))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(checked)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert result.stderr.strip() == ""


def test_the_built_wheel_installs_and_serves(tmp_path: Path) -> None:
    """`pip install` of the wheel gives a `clickloop` that initialises and serves the demo."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        timeout=300,
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    (wheel,) = wheels.glob("clickloop-*.whl")
    # Without PYTHONPATH: a source tree on it would look like clickloop installed already.
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True, timeout=600, env=clean
    )
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "CLICKLOOP_DATA_DIR": str(tmp_path / "data"),
        "CLICKLOOP_PORT": str(port),
    }
    clickloop = str(venv / "bin" / "clickloop")
    init = subprocess.run(
        [clickloop, "init", "--demo"], env=env, capture_output=True, text=True, timeout=60
    )
    assert init.returncode == 0, init.stderr
    link = init.stdout.split("demo campaign link: ")[1].strip()
    process = subprocess.Popen([clickloop, "serve"], env=env, cwd=tmp_path)
    try:
        _wait_for_port(port)
        opener = urllib.request.build_opener(NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as answer:
            opener.open(link, timeout=10)
        assert answer.value.code == 302
    finally:
        process.terminate()
        process.wait(15)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_the_container_image_builds_and_serves(tmp_path: Path) -> None:
    """docker compose builds the image and serves clickloop on PostgreSQL."""
    if not shutil.which("docker"):
        pytest.skip("docker is not installed")
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        pytest.skip("no Docker engine runs on this machine: the image cannot be built here")
    project = f"clickloop-test-{free_port()}"
    compose = ["docker", "compose", "-p", project, "-f", str(ROOT / "compose.yaml")]
    try:
        subprocess.run([*compose, "up", "-d", "--build", "--wait"], check=True, timeout=900)
        with urllib.request.urlopen("http://127.0.0.1:8080/healthz", timeout=10) as answer:
            assert answer.status == 200
    finally:
        subprocess.run([*compose, "down", "-v"], timeout=300)
