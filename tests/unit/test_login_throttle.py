"""The admin login throttle: failures per address within a sliding window."""

from __future__ import annotations

from clickloop.http.web import LoginThrottle


def test_address_is_refused_after_the_limit_until_the_window_passes() -> None:
    """The limit-th failure blocks the address until the oldest failure is a window old."""
    throttle = LoginThrottle(limit=3, window=100.0)
    for moment in (0.0, 10.0, 20.0):
        assert throttle.wait("1.2.3.4", moment) == 0
        throttle.failed("1.2.3.4", moment)
    assert throttle.wait("1.2.3.4", 30.0) == 70.0
    assert throttle.wait("5.6.7.8", 30.0) == 0
    assert throttle.wait("1.2.3.4", 100.0) == 0


def test_success_clears_the_failures() -> None:
    """A successful login forgets the address's earlier failures."""
    throttle = LoginThrottle(limit=2, window=100.0)
    throttle.failed("a", 0.0)
    throttle.succeeded("a")
    throttle.failed("a", 1.0)
    assert throttle.wait("a", 2.0) == 0


def test_memory_is_bounded_by_forgetting_the_stalest_address() -> None:
    """Past max_keys addresses, the one whose last failure is oldest is forgotten."""
    throttle = LoginThrottle(limit=1, window=100.0, max_keys=2)
    throttle.failed("old", 0.0)
    throttle.failed("mid", 5.0)
    throttle.failed("new", 10.0)
    assert throttle.wait("old", 11.0) == 0
    assert throttle.wait("mid", 11.0) > 0 and throttle.wait("new", 11.0) > 0
