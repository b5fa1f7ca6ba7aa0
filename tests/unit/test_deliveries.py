"""Retry schedule and response judging of S2S deliveries."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from clickloop.domain.deliveries import (
    MAX_ATTEMPTS,
    REFUSED_REASON,
    RETRY_AFTER_MAX,
    Delivered,
    DisableTarget,
    ErrorKind,
    GiveUp,
    Retry,
    classify_response,
    compute_retry_at,
    decide_outcome,
    parse_retry_after,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class FixedRng:
    """An rng whose uniform() always returns the same fraction of its range."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def uniform(self, a: float, b: float, /) -> float:
        return a + (b - a) * self.fraction


MID = FixedRng(0.5)


@pytest.mark.parametrize(
    ("attempts_made", "delay"),
    [
        (1, timedelta(0)),
        (2, timedelta(seconds=5)),
        (3, timedelta(minutes=5)),
        (4, timedelta(minutes=30)),
        (5, timedelta(hours=2)),
        (6, timedelta(hours=5)),
        (7, timedelta(hours=10)),
        (8, timedelta(hours=10)),
    ],
)
def test_schedule_without_jitter(attempts_made: int, delay: timedelta) -> None:
    """With zero jitter, the n-th retry comes after the documented delay."""
    assert compute_retry_at(attempts_made, now=NOW, rng=MID) == NOW + delay


def test_schedule_is_spent_after_nine_attempts() -> None:
    """After the ninth failed attempt there is no retry."""
    assert MAX_ATTEMPTS == 9
    assert compute_retry_at(9, now=NOW, rng=MID) is None


@pytest.mark.parametrize(("fraction", "factor"), [(0.0, 0.8), (1.0, 1.2)])
def test_jitter_bounds(fraction: float, factor: float) -> None:
    """Jitter moves a delay by at most ±20%."""
    at = compute_retry_at(5, now=NOW, rng=FixedRng(fraction))
    assert at == NOW + timedelta(hours=2) * factor


def test_jitter_from_seeded_rng_stays_in_bounds() -> None:
    """A real rng gives delays inside [0.8, 1.2] times the schedule, and not all equal."""
    rng = random.Random(7)
    delays = {compute_retry_at(3, now=NOW, rng=rng) - NOW for _ in range(50)}  # type: ignore[operator]
    assert all(timedelta(minutes=4) <= d <= timedelta(minutes=6) for d in delays)
    assert len(delays) > 1


@pytest.mark.parametrize(
    ("attempts_made", "retry_after", "expected"),
    [
        (1, timedelta(seconds=30), timedelta(seconds=30)),  # immediate retry waits as asked
        (4, timedelta(seconds=30), timedelta(minutes=30)),  # schedule is longer: schedule
        (1, timedelta(days=30), RETRY_AFTER_MAX),  # capped
        (1, timedelta(seconds=-5), timedelta(0)),  # a date in the past means now
    ],
)
def test_retry_after_is_a_bounded_lower_bound(
    attempts_made: int, retry_after: timedelta, expected: timedelta
) -> None:
    """Retry-After delays a retry, within RETRY_AFTER_MAX, and never hastens the schedule."""
    at = compute_retry_at(attempts_made, now=NOW, rng=MID, retry_after=retry_after)
    assert at == NOW + expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", timedelta(seconds=120)),
        (" 7 ", timedelta(seconds=7)),
        ("Fri, 02 Jan 2026 03:06:05 GMT", timedelta(minutes=2)),
        ("Fri, 02 Jan 2026 03:00:00 GMT", timedelta(0)),
        ("soon", None),
        ("-3", None),
        ("²", None),
        ("9" * 40, RETRY_AFTER_MAX),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: timedelta | None) -> None:
    """Retry-After is read as seconds or an HTTP date; junk is ignored."""
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    ("status", "body", "must_contain", "expected"),
    [
        (200, "OK", None, None),
        (204, "", None, None),
        (299, "", "", None),
        (200, "ERROR: invalid click", "OK", ErrorKind.BODY_CHECK),
        (200, "status: OK", "OK", None),
        (302, "", None, ErrorKind.HTTP_STATUS),
        (404, "OK", "OK", ErrorKind.HTTP_STATUS),
        (500, "", None, ErrorKind.HTTP_STATUS),
    ],
)
def test_classify_response(
    status: int, body: str, must_contain: str | None, expected: ErrorKind | None
) -> None:
    """Success is a 2xx that contains the required text when one is configured."""
    assert classify_response(status, body, must_contain=must_contain) == expected


@pytest.mark.parametrize(
    ("kind", "status", "headers", "attempts_made", "expected"),
    [
        (None, 200, None, 1, Delivered()),
        (ErrorKind.HTTP_STATUS, 500, None, 1, Retry(at=NOW, reason="http_status: HTTP 500")),
        (
            ErrorKind.HTTP_STATUS,
            503,
            {"Retry-After": "60"},
            1,
            Retry(at=NOW + timedelta(seconds=60), reason="http_status: HTTP 503"),
        ),
        (
            ErrorKind.HTTP_STATUS,
            429,
            {"Retry-After": "60"},
            2,
            Retry(at=NOW + timedelta(seconds=60), reason="http_status: HTTP 429"),
        ),
        (
            ErrorKind.HTTP_STATUS,
            500,
            {"Retry-After": "60"},
            1,
            Retry(at=NOW, reason="http_status: HTTP 500"),
        ),
        (ErrorKind.HTTP_STATUS, 410, None, 1, DisableTarget(reason="http_status: HTTP 410")),
        (ErrorKind.HTTP_STATUS, 404, None, 1, GiveUp(reason="http_status: HTTP 404")),
        (
            ErrorKind.HTTP_STATUS,
            408,
            None,
            2,
            Retry(at=NOW + timedelta(seconds=5), reason="http_status: HTTP 408"),
        ),
        (ErrorKind.HTTP_STATUS, 302, None, 1, Retry(at=NOW, reason="http_status: HTTP 302")),
        (ErrorKind.BODY_CHECK, 200, None, 1, Retry(at=NOW, reason="body_check: HTTP 200")),
        (ErrorKind.TIMEOUT, None, None, 3, Retry(at=NOW + timedelta(minutes=5), reason="timeout")),
        (ErrorKind.DNS, None, None, 1, Retry(at=NOW, reason="dns")),
        (ErrorKind.SSRF, None, None, 1, Retry(at=NOW, reason=REFUSED_REASON)),
        (
            ErrorKind.SSRF,
            None,
            None,
            9,
            GiveUp(reason=f"{REFUSED_REASON}; gave up after 9 attempts"),
        ),
        (ErrorKind.INVALID_URL, None, None, 1, GiveUp(reason="invalid_url")),
        (
            ErrorKind.CONNECT,
            None,
            None,
            9,
            GiveUp(reason="connect; gave up after 9 attempts"),
        ),
    ],
)
def test_decide_outcome(
    kind: ErrorKind | None,
    status: int | None,
    headers: dict[str, str] | None,
    attempts_made: int,
    expected: object,
) -> None:
    """Each kind of failure leads to the documented next step."""
    outcome = decide_outcome(
        attempts_made=attempts_made,
        error_kind=kind,
        status_code=status,
        headers=headers,
        now=NOW,
        rng=MID,
    )
    assert outcome == expected
