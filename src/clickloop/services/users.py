"""Admin users of the web UI: create, check a password, change it, remove.

Passwords are hashed with argon2id (argon2-cffi's defaults); a login for an unknown username
still spends one hash verification, so timing does not tell which usernames exist. A new
password or the user's removal ends the user's sessions (services/sessions.py) in the same
transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from clickloop.errors import Conflict, InvalidInput, NotFound
from clickloop.storage import tables as t

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024

_hasher = PasswordHasher()
# Verified against when the username is unknown, so both paths cost one argon2 verification.
_DUMMY_HASH = _hasher.hash("clickloop: no such user")


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    id: int
    username: str


def _check_password(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD_CHARS <= len(password) <= (
        MAX_PASSWORD_CHARS
    ):
        raise InvalidInput("password", f"{MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")
    return password


def create_user(engine: Engine, username: str, password: str, *, now: datetime) -> int:
    """Create an admin user; the username must be new."""
    username = (username or "").strip()
    if not USERNAME_PATTERN.match(username):
        raise InvalidInput("username", "1-100 letters, digits, '.', '_', '@' or '-'")
    password_hash = _hasher.hash(_check_password(password))
    try:
        with engine.begin() as conn:
            new_id = conn.execute(
                insert(t.users).values(
                    username=username, password_hash=password_hash, created_at=now
                )
            ).inserted_primary_key
    except IntegrityError as exc:
        raise Conflict("user", username) from exc
    assert new_id is not None
    return int(new_id[0])


def authenticate(engine: Engine, username: str, password: str) -> User | None:
    """The user when the username and password match, else None (never says which was wrong)."""
    with engine.connect() as conn:
        row = conn.execute(
            select(t.users.c.id, t.users.c.username, t.users.c.password_hash).where(
                t.users.c.username == (username or "").strip()[:100]
            )
        ).first()
    stored = row.password_hash if row is not None else _DUMMY_HASH
    try:
        _hasher.verify(stored, (password or "")[:MAX_PASSWORD_CHARS])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    if _hasher.check_needs_rehash(stored):
        with engine.begin() as conn:
            _write_hash(conn, row.id, _hasher.hash(password))
    return User(id=row.id, username=row.username)


def get_user(engine: Engine, user_id: int) -> User | None:
    """The user with this id, or None when it no longer exists."""
    with engine.connect() as conn:
        row = conn.execute(select(t.users).where(t.users.c.id == user_id)).first()
    if row is None:
        return None
    return User(id=row.id, username=row.username)


def change_password(engine: Engine, user_id: int, current: str, new: str) -> User:
    """Replace a user's password after checking the current one; end all their sessions."""
    with engine.connect() as conn:
        row = conn.execute(select(t.users).where(t.users.c.id == user_id)).first()
    if row is None:
        raise NotFound("user", user_id)
    try:
        _hasher.verify(row.password_hash, (current or "")[:MAX_PASSWORD_CHARS])
    except (VerifyMismatchError, VerificationError, InvalidHashError) as exc:
        raise InvalidInput("current_password", "the current password is wrong") from exc
    password_hash = _hasher.hash(_check_password(new))
    with engine.begin() as conn:
        _write_hash(conn, user_id, password_hash)
        _end_sessions(conn, user_id)
    return User(id=row.id, username=row.username)


def set_password(engine: Engine, username: str, password: str) -> None:
    """Replace a user's password without the current one (the CLI's reset); end their sessions."""
    password_hash = _hasher.hash(_check_password(password))
    with engine.begin() as conn:
        user_id = _id_of(conn, username)
        _write_hash(conn, user_id, password_hash)
        _end_sessions(conn, user_id)


def remove_user(engine: Engine, username: str) -> None:
    """Delete a user and end their sessions."""
    with engine.begin() as conn:
        user_id = _id_of(conn, username)
        _end_sessions(conn, user_id)
        conn.execute(delete(t.users).where(t.users.c.id == user_id))


def count_users(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.users)).scalar() or 0)


def _id_of(conn: Connection, username: str) -> int:
    found = conn.execute(select(t.users.c.id).where(t.users.c.username == username)).scalar()
    if found is None:
        raise NotFound("user", username)
    return int(found)


def _write_hash(conn: Connection, user_id: int, password_hash: str) -> None:
    conn.execute(update(t.users).where(t.users.c.id == user_id).values(password_hash=password_hash))


def _end_sessions(conn: Connection, user_id: int) -> None:
    conn.execute(delete(t.admin_sessions).where(t.admin_sessions.c.user_id == user_id))
