"""The admin login throttle: attempts per address counted in the database, in fixed windows."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from clickloop.services.login_throttle import clear_attempts, count_attempt
from clickloop.storage import tables as t

START = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
WINDOW = timedelta(seconds=100)


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def test_address_is_refused_past_the_limit_until_its_window_ends(engine: Engine) -> None:
    """The attempt after the limit waits until the window that began with the first one ends."""
    for moment in (0, 10, 20):
        assert count_attempt(engine, "1.2.3.4", now=at(moment), limit=3, window=WINDOW) == (
            timedelta(0)
        )
    assert count_attempt(engine, "1.2.3.4", now=at(30), limit=3, window=WINDOW) == timedelta(
        seconds=70
    )
    assert count_attempt(engine, "5.6.7.8", now=at(30), limit=3, window=WINDOW) == timedelta(0)
    assert count_attempt(engine, "1.2.3.4", now=at(100), limit=3, window=WINDOW) == timedelta(0)


def test_success_clears_the_count(engine: Engine) -> None:
    """After a successful login the address starts again from zero."""
    for moment in (0, 1):
        count_attempt(engine, "a", now=at(moment), limit=2, window=WINDOW)
    clear_attempts(engine, "a")
    assert count_attempt(engine, "a", now=at(2), limit=2, window=WINDOW) == timedelta(0)


def test_concurrent_attempts_pass_the_limit_exactly(engine: Engine) -> None:
    """Forty attempts from one address on eight threads at once: exactly the limit get through."""
    allowed: list[bool] = []
    lock = threading.Lock()

    def attempts() -> None:
        for _ in range(5):
            wait = count_attempt(engine, "9.9.9.9", now=at(1), limit=10, window=WINDOW)
            with lock:
                allowed.append(not wait)

    threads = [threading.Thread(target=attempts) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == 10 and len(allowed) == 40


def test_rows_of_ended_windows_are_dropped(engine: Engine) -> None:
    """Addresses whose window ended leave the table when others attempt, so it stays small."""
    for index in range(5):
        count_attempt(engine, f"10.0.0.{index}", now=at(0), window=WINDOW)
    count_attempt(engine, "10.0.1.1", now=at(200), window=WINDOW)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.login_attempts)).scalar() == 1
