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
from collections.abc import Callable
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
        if record.levelno < logging.WARNING or getattr(record, "counted", False):
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


class Outage:
    """A database outage as requests meet it: one line when the first request fails, one with
    the count every `window` seconds while they keep failing, one when a request succeeds again.

    Used from one event loop (no lock). Its lines carry `counted` so that the RepeatFilter,
    which would fold the periodic line into its predecessor, lets them through.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        window: float = REPEAT_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.down = False
        self._log = logger
        self._window = window
        self._clock = clock
        self._since = self._reported = 0.0
        self._total = self._recent = 0

    def failed(self, reason: object) -> None:
        now = self._clock()
        if not self.down:
            self.down, self._since, self._reported = True, now, now
            self._total, self._recent = 1, 0
            self._warn("database outage: %s (answering 503 until it is back)", reason)
            return
        self._total += 1
        self._recent += 1
        if now - self._reported >= self._window:
            self._warn(
                "database outage continues: %d requests refused in the last %.0f s: %s",
                self._recent,
                now - self._reported,
                reason,
            )
            self._reported, self._recent = now, 0

    def recovered(self) -> None:
        if self.down:
            self.down = False
            self._warn(
                "database outage over after %.1f s: %d requests refused",
                self._clock() - self._since,
                self._total,
            )

    def _warn(self, message: str, *args: object) -> None:
        self._log.warning(message, *args, extra={"counted": True})


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
