"""Process settings: the only module that reads the environment or the config file.

`load_settings(environ)` is called once by the CLI; the frozen result is passed down.
Variables are `CLICKLOOP_*`; `CLICKLOOP_CONFIG` names an optional TOML file whose keys are the
same names in lower case without the prefix. The environment wins over the file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from clickloop.errors import ConfigError

DEFAULT_PORT = 8080


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    data_dir: Path = Path("data")
    database_url: str = ""  # empty: SQLite file in data_dir
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1
    # Per server process: seconds a client has to send a whole request (head and body; for a new
    # connection, from its opening) before a 408 and close; open connections beyond which a new
    # one is answered 503 and closed. 0: no limit.
    request_timeout_seconds: int = 30
    max_connections: int = 10_000
    # Header carrying the client address when behind a proxy, e.g. "x-forwarded-for".
    # Empty: the TCP peer address is the visitor's address.
    trusted_proxy_header: str = ""
    # Public base URL, used when printing campaign and postback links.
    public_url: str = ""
    # Group commit: under load, wait up to this long for more requests before a commit (0:
    # never), but not once every open connection's request is in; at most this many rows in one.
    commit_delay_us: int = 2000
    commit_max_rows: int = 2000
    # PostgreSQL: the longest a click or postback waits for its commit before it is answered
    # 503 (and the connect, pool checkout and lock wait limit); a statement's limit (0: none).
    database_timeout_seconds: int = 5
    database_statement_timeout_seconds: int = 60
    # SQLite durability: FULL survives power loss, NORMAL only process crashes.
    sqlite_synchronous: str = "FULL"
    # Raw clicks of whole UTC days older than this many days are pruned by `serve` (hourly
    # check); 0 keeps them all (docs/deployment.md, "Operations: retention and disk").
    retention_days: int = 0
    # Run the S2S dispatcher inside `clickloop serve`.
    embedded_worker: bool = True
    # S2S dispatcher: requests in flight overall and per host, request timeouts, claim lease
    # (a crashed dispatcher's deliveries are taken over after it; > total timeout + 10 s).
    s2s_concurrency: int = 256
    s2s_per_host: int = 64
    s2s_connect_timeout_seconds: int = 5
    s2s_total_timeout_seconds: int = 15
    s2s_lease_seconds: int = 60
    # Logs: debug, info, warning or error; text or json lines on stderr; one line per request.
    log_level: str = "info"
    log_format: str = "text"
    access_log: bool = False
    # Exchange rates: `serve` updates them from this ECB-format file (XML, CSV or its zip) once
    # a day when on, keeping the rates in force when it fails; seconds a download may take.
    rates_auto_update: bool = True
    rates_url: str = "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml"
    rates_timeout_seconds: int = 30
    # /metrics answers only `Authorization: Bearer <this>`; empty: /metrics is off (403).
    metrics_token: str = ""

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'clickloop.db').resolve()}"

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build settings from an optional TOML file (CLICKLOOP_CONFIG) and CLICKLOOP_* variables."""
    raw: dict[str, Any] = {}
    config_file = environ.get("CLICKLOOP_CONFIG")
    if config_file:
        try:
            raw.update(tomllib.loads(Path(config_file).read_text(encoding="utf-8")))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc}") from exc
    known = {f.name: f for f in fields(Settings)}
    unknown = set(raw) - set(known)
    if unknown:
        raise ConfigError(f"unknown settings in {config_file}: {', '.join(sorted(unknown))}")
    for name in known:
        value = environ.get(f"CLICKLOOP_{name.upper()}")
        if value is not None:
            raw[name] = value
    return Settings(**{name: _coerce(name, value, known[name].type) for name, value in raw.items()})


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    kind = str(annotation)
    try:
        if kind == "int":
            number = int(value)
            if number < 0:
                raise ValueError("negative")
            return number
        if kind == "bool":
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError("not a boolean")
        if kind == "Path":
            return Path(str(value))
        return str(value)
    except ValueError as exc:
        raise ConfigError(f"setting {name}: invalid value {value!r} ({exc})") from exc
