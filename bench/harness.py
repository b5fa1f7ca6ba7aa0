"""Shared load-test harness: a throwaway clickloop data dir and server, an nginx baseline on
loopback, and wrk runs (`--latency`, plus a Lua `done` hook that reports the figures as JSON).

Reuse it from a script in bench/: `sys.path.insert(0, str(Path(__file__).resolve().parent))`,
then `require()` (installs nginx and wrk with apt-get when missing), `with workdir() as root:`,
`with nginx(root / "nginx", "return 302 …;") as base:` and `with clickloop_server(env, log) as
base:` around `run_wrk(url, script=LUA, directory=root)` three times, then `print_table()` (the
medians of the runs and the ratios). See `bench/clicks` and `bench/postbacks`.

Every bench takes `--database-url` (`add_database_option`, `bench_database_url`): by default a
fresh SQLite file in its work directory, or an empty database of its own, e.g. PostgreSQL's
`clickloop_bench` created for the run and dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import median

from sqlalchemy import inspect

from clickloop.storage.db import make_engine

# Appended to every wrk script: one JSON line with the figures that matter.
REPORT_LUA = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nBENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"non_2xx": %d, "socket_errors": %d, "timeouts": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout, e.timeout))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int  # wrk counts statuses >= 400 here; 3xx count as successes
    socket_errors: int
    requests: int = 0  # responses wrk read completely
    timeouts: int = 0
    latency_text: str = ""  # wrk's own --latency distribution, for the record
    # CPU the server's processes used per request during the run (µs), when run_wrk was given
    # its pid: unlike req/s, it barely moves when other work shares the machine.
    server_cpu_us: float = 0.0
    # CPU of the machine's PostgreSQL processes per request during the run (µs): where a bench
    # on PostgreSQL spends the rest (the report cubes' folds, the inserts), which req/s on two
    # shared cores hides. On SQLite it stays near 0.
    database_cpu_us: float = 0.0

    @property
    def answered_below_400(self) -> int:
        """Responses with a status below 400 (for a click link: the 302s)."""
        return self.requests - self.non_2xx


def add_database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default="",
        help="an empty database for the bench, e.g. postgresql://postgres@127.0.0.1/clickloop_bench"
        " (createdb it first, dropdb it afterwards); default: a fresh SQLite file",
    )


def bench_database_url(option: str, directory: Path) -> str:
    """`option` (the `--database-url` given), which must name an empty database: the bench
    creates its schema and counts its rows; without it, a new SQLite file in `directory`."""
    if not option:
        directory.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{directory / 'clickloop.db'}"
    engine = make_engine(option)
    try:
        tables = inspect(engine).get_table_names()
    finally:
        engine.dispose()
    if tables:
        sys.exit(f"{option} has {len(tables)} tables already: give the bench an empty database")
    return option


def database_label(url: str) -> str:
    """What a bench's title calls the database at `url`."""
    return "SQLite" if url.startswith("sqlite") else "PostgreSQL"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require(*programs: str) -> None:
    """Exit unless `programs` exist; nginx and wrk are installed with apt-get when missing."""
    missing = [p for p in programs if shutil.which(p) is None and not Path(p).exists()]
    packages = sorted({"nginx" if "nginx" in p else Path(p).name for p in missing} & APT_PACKAGES)
    if packages and shutil.which("apt-get"):
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        print(f"installing {' '.join(packages)} with apt-get", flush=True)
        subprocess.run([*sudo, "apt-get", "update", "-q"], check=False, capture_output=True)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-q", *packages], check=False)
        missing = [p for p in programs if shutil.which(p) is None and not Path(p).exists()]
    if missing:
        sys.exit(f"missing: {', '.join(missing)} (apt-get install nginx wrk)")


APT_PACKAGES = {"nginx", "wrk"}


def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


class ServerUrl(str):
    """A base URL that also knows the pid of the server process behind it."""

    pid: int

    def __new__(cls, url: str, pid: int) -> ServerUrl:
        instance = super().__new__(cls, url)
        instance.pid = pid
        return instance


def _processes() -> Iterator[tuple[int, str, int, int]]:
    """(pid, name, parent pid, user + system CPU ticks) of each live process (Linux /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            head, rest = (entry / "stat").read_text().rsplit(")", 1)
        except (OSError, ValueError):
            continue
        fields = rest.split()
        name = head.split(" (", 1)[-1]
        yield int(entry.name), name, int(fields[1]), int(fields[11]) + int(fields[12])


def postgres_cpu_seconds() -> float:
    """User + system CPU of the live processes named `postgres` (Linux /proc)."""
    ticks = sum(used for _, name, _, used in _processes() if name == "postgres")
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and all its live descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    times: dict[int, int] = {}
    for process, _, parent, used in _processes():
        children.setdefault(parent, []).append(process)
        times[process] = used
    family, total = [pid], 0
    while family:
        member = family.pop()
        total += times.get(member, 0)
        family.extend(children.get(member, ()))
    return total / os.sysconf("SC_CLK_TCK")


@contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="clickloop-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def clickloop_env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "CLICKLOOP_DATA_DIR": str(data_dir),
        "CLICKLOOP_PORT": str(port),
        "CLICKLOOP_LOG_LEVEL": "warning",
    }
    env.update({f"CLICKLOOP_{k.upper()}": v for k, v in extra.items()})
    return env


def run_cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "clickloop.cli", *args], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"clickloop {' '.join(args)} failed: {done.stderr}")
    return done.stdout


@contextmanager
def clickloop_server(env: dict[str, str], log: Path) -> Iterator[ServerUrl]:
    """`clickloop serve` with `env`; yields its base URL."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "clickloop.cli", "serve"], env=env, stdout=out, stderr=out
        )
    base = ServerUrl(f"http://127.0.0.1:{env['CLICKLOOP_PORT']}", process.pid)
    try:
        wait_http(f"{base}/healthz")
        yield base
    except BaseException:
        # The log goes with the bench's work directory: what the server said, before it does.
        tail = log.read_text(errors="replace").splitlines()[-40:]
        print("\n".join(["clickloop serve's log, the last lines:", *tail]), file=sys.stderr)
        raise
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def nginx(directory: Path, location_body: str, *, workers: int = 2) -> Iterator[ServerUrl]:
    """nginx on loopback answering every request with `location_body` (e.g. `return 302 …;`),
    with its own config and prefix in `directory`; stopped on exit."""
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "nginx.conf"
    config.write_text(
        f"""
worker_processes {workers};
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {directory};
  proxy_temp_path {directory};
  fastcgi_temp_path {directory};
  uwsgi_temp_path {directory};
  scgi_temp_path {directory};
  server {{
    listen 127.0.0.1:{port};
    location / {{ {location_body} }}
  }}
}}
"""
    )
    process = subprocess.Popen(["/usr/sbin/nginx", "-c", str(config), "-p", str(directory)])
    base = ServerUrl(f"http://127.0.0.1:{port}", process.pid)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(10)


def run_wrk(
    url: str,
    *,
    script: str,
    directory: Path,
    connections: int = 64,
    threads: int = 2,
    seconds: int = 10,
    args: Sequence[str] = (),
    server_pid: int | None = None,
) -> WrkResult:
    """One wrk run with `script` (Lua, without a `done` hook) against `url`; with `server_pid`
    (`base.pid` of a ServerUrl), also the CPU that process tree used per request."""
    path = directory / "wrk.lua"
    path.write_text(script + REPORT_LUA)
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
        "--latency", "-s", str(path), url, *(["--", *args] if args else []),
    ]  # fmt: skip
    pid = server_pid or getattr(url, "pid", None)
    before = tree_cpu_seconds(pid) if pid else 0.0
    database_before = postgres_cpu_seconds()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result = parse_wrk(done.stdout)
    if result.requests:
        database = postgres_cpu_seconds() - database_before
        result = replace(result, database_cpu_us=database / result.requests * 1e6)
    if pid and result.requests:
        used = tree_cpu_seconds(pid) - before
        result = replace(result, server_cpu_us=used / result.requests * 1e6)
    return result


def parse_wrk(output: str) -> WrkResult:
    """Figures from wrk's output: the BENCH line of REPORT_LUA, and the --latency table."""
    line = next(x for x in output.splitlines() if x.startswith("BENCH "))
    data = json.loads(line.removeprefix("BENCH "))
    start = output.find("Latency Distribution")
    return WrkResult(
        requests_per_s=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        non_2xx=data["non_2xx"],
        socket_errors=data["socket_errors"],
        requests=data["requests"],
        timeouts=data.get("timeouts", 0),
        latency_text=output[start : output.find("\n\n", start)] if start >= 0 else "",
    )


def percentiles_from_latency_text(text: str) -> dict[int, float]:
    """wrk's `--latency` table (`50%  1.23ms`) as {percent: milliseconds}."""
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
    result: dict[int, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].endswith("%"):
            value = parts[1]
            unit = next(u for u in ("us", "ms", "s", "m") if value.endswith(u))
            result[int(float(parts[0][:-1]))] = float(value[: -len(unit)]) * units[unit]
    return result


def medians(results: Sequence[WrkResult]) -> WrkResult:
    """The median of each figure over several runs (runs are noisy on a shared 2-core box)."""
    return WrkResult(
        requests_per_s=median(r.requests_per_s for r in results),
        p50_ms=median(r.p50_ms for r in results),
        p99_ms=median(r.p99_ms for r in results),
        non_2xx=sum(r.non_2xx for r in results),
        socket_errors=sum(r.socket_errors for r in results),
        requests=sum(r.requests for r in results),
        timeouts=sum(r.timeouts for r in results),
        server_cpu_us=median(r.server_cpu_us for r in results),
        database_cpu_us=median(r.database_cpu_us for r in results),
    )


def print_table(title: str, runs: dict[str, list[WrkResult]]) -> None:
    """Per-run figures, the median of each target, and each target's ratio to the first one."""
    print(f"\n{title}")
    # The interpreter matters (~20% between builds of one version, docs/clicks.md).
    print(f"servers on Python {platform.python_version()}, {os.path.realpath(sys.executable)}")
    print(
        f"{'target':<12} {'run':>3} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}"
        f" {'server CPU µs/req':>18} {'PostgreSQL CPU µs/req':>22}"
    )
    middle: dict[str, WrkResult] = {}
    for name, results in runs.items():
        for n, r in enumerate(results, 1):
            print(
                f"{name:<12} {n:>3} {r.requests_per_s:>10.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f}"
                f" {r.non_2xx + r.socket_errors:>8} {r.server_cpu_us:>18.1f}"
                f" {r.database_cpu_us:>22.1f}"
            )
        middle[name] = medians(results)
    baseline = next(iter(middle.values())).requests_per_s
    for name, m in middle.items():
        print(
            f"median {name}: {m.requests_per_s:.0f} req/s, p50 {m.p50_ms:.2f} ms, "
            f"p99 {m.p99_ms:.2f} ms, server CPU {m.server_cpu_us:.1f} µs/req, "
            f"PostgreSQL {m.database_cpu_us:.1f} µs/req "
            f"({m.requests_per_s / baseline:.1%} of the first target)"
        )
