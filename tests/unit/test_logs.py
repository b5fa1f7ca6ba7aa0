"""Log configuration: repeated warnings folded into a count, settings checked."""

from __future__ import annotations

import logging

import pytest

from clickloop.errors import ConfigError
from clickloop.logs import RepeatFilter, UTCFormatter, logging_config


def record(message: str, at: float, level: int = logging.WARNING) -> logging.LogRecord:
    made = logging.LogRecord("clickloop.test", level, __file__, 1, message, ("x",), None)
    made.created = at
    made.msecs = at % 1 * 1000
    return made


def test_a_repeated_warning_is_written_once_a_window_with_the_count() -> None:
    """In a 10 s window only the first of a kind passes; the next one after says how many."""
    repeats = RepeatFilter(window=10)
    passed = [repeats.filter(record("database down: %s", at)) for at in (0, 1, 2, 3, 9.9)]
    assert passed == [True, False, False, False, False]
    later = record("database down: %s", 12)
    assert repeats.filter(later)
    assert later.getMessage() == "database down: x [4 more like this since the last one]"
    assert repeats.filter(record("another kind: %s", 12.5))


def test_info_lines_are_never_folded() -> None:
    """Below WARNING every line is written (the access log, start-up lines)."""
    repeats = RepeatFilter(window=10)
    assert all(repeats.filter(record("GET %s", at, logging.INFO)) for at in (0, 0.1, 0.2))


def test_text_lines_carry_a_utc_timestamp() -> None:
    """The text format starts with an ISO 8601 UTC time."""
    line = UTCFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(
        record("hello %s", 0)
    )
    assert line == "1970-01-01T00:00:00.000Z WARNING clickloop.test: hello x"


@pytest.mark.parametrize(("level", "log_format"), [("loud", "text"), ("info", "xml"), ("", "json")])
def test_bad_logging_settings_are_refused(level: str, log_format: str) -> None:
    """An unknown level or format is a ConfigError naming the setting."""
    with pytest.raises(ConfigError, match="setting log_"):
        logging_config(level=level, log_format=log_format, access_log=False)


def test_an_outage_logs_its_start_a_count_every_window_and_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """10,000 refused requests over 25 s give four lines: the start, a count at 10 s and at
    20 s, and the end with the total; a success outside an outage logs nothing."""
    from clickloop.logs import Outage

    now = [0.0]
    outage = Outage(logging.getLogger("clickloop.test"), window=10, clock=lambda: now[0])
    outage.recovered()
    with caplog.at_level(logging.WARNING):
        for request in range(10_000):
            now[0] = request * 0.0025
            outage.failed("connection refused")
        outage.recovered()
        outage.recovered()
    assert [r.getMessage() for r in caplog.records] == [
        "database outage: connection refused (answering 503 until it is back)",
        "database outage continues: 4000 requests refused in the last 10 s: connection refused",
        "database outage continues: 4000 requests refused in the last 10 s: connection refused",
        "database outage over after 25.0 s: 10000 requests refused",
    ]
    repeats = RepeatFilter(window=10)  # the periodic line is not folded away in a window
    assert all(repeats.filter(r) for r in caplog.records)


def test_each_disabled_target_is_logged_under_its_own_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Targets disabled within a window are distinct events: the RepeatFilter (which groups by
    message template) let the first through and counted the others under its name."""
    from clickloop.domain.deliveries import TargetKind
    from clickloop.sender.dispatcher import report_disabled
    from clickloop.storage.outbox import DisabledTarget

    repeats = RepeatFilter(window=10)
    caplog.handler.addFilter(repeats)
    try:
        with caplog.at_level(logging.WARNING, logger="clickloop.sender.dispatcher"):
            report_disabled(
                DisabledTarget(kind=TargetKind.TRAFFIC_SOURCE, id=n, reason="410 Gone")
                for n in (1, 2, 3)
            )
    finally:
        caplog.handler.removeFilter(repeats)
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(" disabled")[0] for line in lines] == [
        f"S2S target {TargetKind.TRAFFIC_SOURCE} {n}" for n in (1, 2, 3)
    ]
    assert not any("more like this" in line for line in lines)
