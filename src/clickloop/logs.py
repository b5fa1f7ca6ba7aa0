"""Logging for every clickloop process: UTC timestamps always, text or JSON lines, an optional
access log, and a warning that repeats (one per failed request in a database outage) folded
into the first of its kind and a count of the rest.

Only the CLI applies it (`logging_config` is a `logging.config.dictConfig` dictionary, which
uvicorn applies in each of its worker processes too).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from clickloop.errors import ConfigError

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
# Identical warnings within this window after the first are counted, not written.
REPEAT_WINDOW_SECONDS = 10.0
_MAX_KINDS = 1000


class UTCFormatter(logging.Formatter):
    """`2026-12-04T16:20:01.123Z WARNING clickloop.http.api: message`."""

    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def converter(self, seconds: float | None) -> time.struct_time:
        return time.gmtime(seconds)


class RepeatFilter(logging.Filter):
    """Lets the first warning of a kind (logger, level, message template) through in each
    window and counts the others; the next one let through says how many were left out."""

    def __init__(self, window: float = REPEAT_WINDOW_SECONDS) -> None:
        super().__init__()
        self.window = window
        self._lock = threading.Lock()
        self._kinds: dict[tuple[str, int, str], list[float]] = {}  # kind → [start, left out]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        kind = (record.name, record.levelno, str(record.msg))
        with self._lock:
            seen = self._kinds.get(kind)
            if seen is not None and record.created - seen[0] < self.window:
                seen[1] += 1
                return False
            if len(self._kinds) >= _MAX_KINDS:
                self._kinds.clear()
            self._kinds[kind] = [record.created, 0]
        left_out = int(seen[1]) if seen is not None else 0
        if left_out:
            record.repeated = left_out
            record.msg = f"{record.msg} [{left_out} more like this since the last one]"
        return True


def logging_config(*, level: str, log_format: str, access_log: bool) -> dict[str, Any]:
    """The dictConfig of a server or worker process: everything to stderr through one handler."""
    if level.lower() not in LEVELS:
        raise ConfigError(f"setting log_level: one of {', '.join(LEVELS)}, not {level!r}")
    if log_format.lower() not in FORMATS:
        raise ConfigError(f"setting log_format: one of {', '.join(FORMATS)}, not {log_format!r}")
    formatter: dict[str, Any] = (
        {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",
        }
        if log_format.lower() == "json"
        else {"()": UTCFormatter, "fmt": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"repeats": {"()": RepeatFilter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["repeats"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            # uvicorn's own loggers write through the same handler; its access log, when
            # asked for, whatever the level.
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {
                "handlers": [],
                "propagate": True,
                "level": "INFO" if access_log else "WARNING",
            },
        },
    }
