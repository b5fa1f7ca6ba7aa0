"""Roles and states of users: analysts, disabling, resets, and the last active admin kept."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import Engine

from clickloop.errors import InvalidInput
from clickloop.services import sessions, tokens, users
from clickloop.storage.db import make_engine

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
PASSWORD = "correct horse"


def test_an_analyst_cannot_change_and_says_so(engine: Engine) -> None:
    """Users and tokens are admins unless made analysts; a bad role is refused by name."""
    users.create_user(engine, "boss", PASSWORD, now=NOW)
    users.create_user(engine, "ana", PASSWORD, now=NOW, role="Analyst")
    assert [(u.username, u.role) for u in users.list_users(engine, now=NOW)] == [
        ("ana", "analyst"),
        ("boss", "admin"),
    ]
    found = users.authenticate(engine, "ana", PASSWORD)
    assert found is not None and not found.can_change
    with pytest.raises(InvalidInput, match="one of admin, analyst"):
        users.create_user(engine, "eve", PASSWORD, now=NOW, role="root")
    token = tokens.create_token(engine, name="dash", now=NOW, role="analyst")
    holder = tokens.verify_token(engine, token, now=NOW)
    assert holder is not None and not holder.can_change


def test_disabling_ends_sessions_and_logins_until_enabled(engine: Engine) -> None:
    """A disabled user's live sessions end at once and its password no longer logs in."""
    users.create_user(engine, "boss", PASSWORD, now=NOW)
    ana = users.create_user(engine, "ana", PASSWORD, now=NOW, role="analyst")
    session = sessions.open_session(engine, ana, now=NOW)
    assert users.list_users(engine, now=NOW)[0].sessions == 1
    users.disable_user(engine, ana, now=NOW)
    assert sessions.session_user(engine, session, now=NOW) is None
    assert users.authenticate(engine, "ana", PASSWORD) is None
    assert users.list_users(engine, now=NOW)[0].disabled_at == NOW
    users.enable_user(engine, ana)
    assert users.authenticate(engine, "ana", PASSWORD) is not None


def test_a_reset_password_ends_sessions(engine: Engine) -> None:
    """An admin's reset needs no current password and logs the user out everywhere."""
    ana = users.create_user(engine, "ana", PASSWORD, now=NOW)
    session = sessions.open_session(engine, ana, now=NOW)
    users.reset_password(engine, ana, "battery staple")
    assert sessions.session_user(engine, session, now=NOW) is None
    assert users.authenticate(engine, "ana", "battery staple") is not None


def test_the_last_active_admin_stays(engine: Engine) -> None:
    """The only active admin cannot be disabled, demoted or removed; with a second one it can,
    and a disabled admin does not count."""
    boss = users.create_user(engine, "boss", PASSWORD, now=NOW)
    other = users.create_user(engine, "other", PASSWORD, now=NOW)
    users.disable_user(engine, other, now=NOW)
    for attempt in (
        lambda: users.disable_user(engine, boss, now=NOW),
        lambda: users.set_role(engine, boss, "analyst"),
        lambda: users.remove_user(engine, "boss"),
    ):
        with pytest.raises(InvalidInput, match="last active admin"):
            attempt()
    users.enable_user(engine, other)
    users.set_role(engine, boss, "analyst")
    with pytest.raises(InvalidInput, match="last active admin"):
        users.disable_user(engine, other, now=NOW)


def test_two_admins_disabling_each_other_at_once_leave_one(database_url: str) -> None:
    """Two admins, each disabled by a concurrent transaction, round after round: exactly one
    of them succeeds every time."""
    engines = [make_engine(database_url) for _ in range(2)]
    ids = [users.create_user(engines[0], name, PASSWORD, now=NOW) for name in ("a", "b")]
    barrier = threading.Barrier(2)

    def disable(pair: tuple[Engine, int]) -> bool:
        barrier.wait()
        try:
            users.disable_user(pair[0], pair[1], now=NOW)
        except InvalidInput:
            return False
        return True

    outcomes = []
    try:
        with ThreadPoolExecutor(2) as pool:
            for _ in range(30):
                for user_id in ids:
                    users.enable_user(engines[0], user_id)
                done = list(pool.map(disable, zip(engines, ids, strict=True)))
                active = [u for u in users.list_users(engines[0], now=NOW) if not u.disabled_at]
                outcomes.append((sorted(done), len(active)))
    finally:
        for engine in engines:
            engine.dispose()
    assert all(done == [False, True] and active == 1 for done, active in outcomes), outcomes
