"""Users of the web UI: create, list, check a password, change or reset it, change the role,
disable, enable, remove.

Two roles: an admin may do everything; an analyst sees reports and logs but no secrets and
changes nothing (the web UI and API refuse its writes). Passwords are hashed with argon2id
(argon2-cffi's defaults); a login for an unknown or disabled username still spends one hash
verification, so timing does not tell which usernames exist. A new password, disabling or
removing a user ends their sessions (services/sessions.py) in the same transaction. The last
active admin cannot be disabled, demoted or removed: someone must be able to administer.
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
from clickloop.storage.db import reader_engine

ADMIN = "admin"
ANALYST = "analyst"
ROLES = (ADMIN, ANALYST)

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024

_hasher = PasswordHasher()
# Verified against when the username is unknown, so both paths cost one argon2 verification.
# Written out, not hashed at import: that cost every CLI command and server start ~0.15 s. A
# test checks it has the hasher's current parameters (else the two paths would differ).
DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$Ju1FKFPmKggNJiASngrFLw"
    "$AmrwmpDJT8ijFkyUy9OOcY+fd9yyOWdda2WPMdkJXKk"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    id: int
    username: str
    role: str = ADMIN

    @property
    def can_change(self) -> bool:
        """Whether this user may change anything (an analyst only reads)."""
        return self.role == ADMIN


@dataclass(frozen=True, slots=True, kw_only=True)
class UserRow:
    """A user as the users page and `user list` show it."""

    id: int
    username: str
    role: str
    created_at: datetime
    disabled_at: datetime | None
    sessions: int  # live sessions (browsers logged in)


def check_role(role: str) -> str:
    """A role name in lower case, or InvalidInput naming the roles."""
    value = (role or "").strip().lower()
    if value not in ROLES:
        raise InvalidInput("role", f"one of {', '.join(ROLES)}")
    return value


def _check_password(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD_CHARS <= len(password) <= (
        MAX_PASSWORD_CHARS
    ):
        raise InvalidInput("password", f"{MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")
    return password


def create_user(
    engine: Engine, username: str, password: str, *, now: datetime, role: str = ADMIN
) -> int:
    """Create a user (an admin unless `role` says otherwise); the username must be new."""
    username = (username or "").strip()
    if not USERNAME_PATTERN.match(username):
        raise InvalidInput("username", "1-100 letters, digits, '.', '_', '@' or '-'")
    role = check_role(role)
    password_hash = _hasher.hash(_check_password(password))
    try:
        with engine.begin() as conn:
            new_id = conn.execute(
                insert(t.users).values(
                    username=username, password_hash=password_hash, created_at=now, role=role
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
            select(t.users).where(
                t.users.c.username == (username or "").strip()[:100],
                t.users.c.disabled_at.is_(None),
            )
        ).first()
    stored = row.password_hash if row is not None else DUMMY_HASH
    try:
        _hasher.verify(stored, (password or "")[:MAX_PASSWORD_CHARS])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    if _hasher.check_needs_rehash(stored):
        with engine.begin() as conn:
            _write_hash(conn, row.id, _hasher.hash(password))
    return User(id=row.id, username=row.username, role=row.role)


def get_user(engine: Engine, user_id: int) -> User | None:
    """The user with this id, or None when it no longer exists."""
    with engine.connect() as conn:
        row = conn.execute(select(t.users).where(t.users.c.id == user_id)).first()
    if row is None:
        return None
    return User(id=row.id, username=row.username, role=row.role)


def find_user(engine: Engine, username: str) -> User:
    """The user with this username; NotFound when there is none."""
    with engine.connect() as conn:
        row = conn.execute(select(t.users).where(t.users.c.username == username)).first()
    if row is None:
        raise NotFound("user", username)
    return User(id=row.id, username=row.username, role=row.role)


def list_users(engine: Engine, *, now: datetime) -> list[UserRow]:
    """Every user, by username, with how many live sessions each has."""
    u, s = t.users.c, t.admin_sessions.c
    live = (
        select(func.count())
        .where(s.user_id == u.id, s.expires_at > now)
        .correlate(t.users)
        .scalar_subquery()
    )
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                u.id, u.username, u.role, u.created_at, u.disabled_at, live.label("sessions")
            ).order_by(u.username)
        )
        return [UserRow(**row._mapping) for row in rows]


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
    reset_password(engine, _id_in(engine, username), password)


def reset_password(engine: Engine, user_id: int, password: str) -> None:
    """An admin's reset: a new password without the current one; the user's sessions end."""
    password_hash = _hasher.hash(_check_password(password))
    with engine.begin() as conn:
        _require(conn, user_id)
        _write_hash(conn, user_id, password_hash)
        _end_sessions(conn, user_id)


def disable_user(engine: Engine, user_id: int, *, now: datetime) -> None:
    """The user can no longer log in, and their sessions end at once."""
    with engine.begin() as conn:
        _keep_an_admin(conn, user_id, "disable")
        conn.execute(
            update(t.users)
            .where(t.users.c.id == user_id, t.users.c.disabled_at.is_(None))
            .values(disabled_at=now)
        )
        _end_sessions(conn, user_id)


def enable_user(engine: Engine, user_id: int) -> None:
    """A disabled user may log in again (with the password they had)."""
    with engine.begin() as conn:
        _require(conn, user_id)
        conn.execute(update(t.users).where(t.users.c.id == user_id).values(disabled_at=None))


def set_role(engine: Engine, user_id: int, role: str) -> None:
    """Make the user an admin or an analyst; their sessions carry the new role at once."""
    role = check_role(role)
    with engine.begin() as conn:
        if role != ADMIN:
            _keep_an_admin(conn, user_id, "demote")
        _require(conn, user_id)
        conn.execute(update(t.users).where(t.users.c.id == user_id).values(role=role))


def remove_user(engine: Engine, username: str) -> None:
    """Delete a user and end their sessions."""
    with engine.begin() as conn:
        user_id = _id_of(conn, username)
        _keep_an_admin(conn, user_id, "remove")
        _end_sessions(conn, user_id)
        conn.execute(delete(t.users).where(t.users.c.id == user_id))


def count_users(engine: Engine) -> int:
    with reader_engine(engine).connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.users)).scalar() or 0)


def _keep_an_admin(conn: Connection, user_id: int, action: str) -> None:
    """Refuse to take away the last active admin. The active admins' rows are locked first
    (PostgreSQL; SQLite's transactions hold the write lock), so two admins disabling each
    other at once cannot both succeed."""
    u = t.users.c
    _require(conn, user_id)
    admins = set(
        conn.execute(
            select(u.id).where(u.role == ADMIN, u.disabled_at.is_(None)).with_for_update()
        ).scalars()
    )
    if admins == {user_id}:
        raise InvalidInput(
            "user", f"cannot {action} the last active admin: make another user an admin first"
        )


def _require(conn: Connection, user_id: int) -> None:
    if conn.execute(select(t.users.c.id).where(t.users.c.id == user_id)).first() is None:
        raise NotFound("user", user_id)


def _id_in(engine: Engine, username: str) -> int:
    with engine.connect() as conn:
        return _id_of(conn, username)


def _id_of(conn: Connection, username: str) -> int:
    found = conn.execute(select(t.users.c.id).where(t.users.c.username == username)).scalar()
    if found is None:
        raise NotFound("user", username)
    return int(found)


def _write_hash(conn: Connection, user_id: int, password_hash: str) -> None:
    conn.execute(update(t.users).where(t.users.c.id == user_id).values(password_hash=password_hash))


def _end_sessions(conn: Connection, user_id: int) -> None:
    conn.execute(delete(t.admin_sessions).where(t.admin_sessions.c.user_id == user_id))
