"""Admin UI sessions, kept server-side: logging out, a new password, disabling or removing the
user ends them at once, whatever cookies were saved. The cookie holds a random id; the table
its SHA-256.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine

from clickloop.services.users import User
from clickloop.storage import tables as t

SESSION_DAYS = 14


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()


def open_session(engine: Engine, user_id: int, *, now: datetime) -> str:
    """Start a session for the user; return its id for the cookie."""
    session_id = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        # Expired sessions are dropped as new ones start, so the table holds live ones only.
        conn.execute(delete(t.admin_sessions).where(t.admin_sessions.c.expires_at <= now))
        conn.execute(
            insert(t.admin_sessions).values(
                id_hash=_hash(session_id),
                user_id=user_id,
                created_at=now,
                expires_at=now + timedelta(days=SESSION_DAYS),
            )
        )
    return session_id


def session_user(engine: Engine, session_id: str, *, now: datetime) -> User | None:
    """The user of a live session, or None when it ended, expired or never existed."""
    s, u = t.admin_sessions.c, t.users.c
    with engine.connect() as conn:
        row = conn.execute(
            select(u.id, u.username, u.role)
            .join(t.admin_sessions, s.user_id == u.id)
            .where(s.id_hash == _hash(session_id), s.expires_at > now, u.disabled_at.is_(None))
        ).first()
    return None if row is None else User(id=row.id, username=row.username, role=row.role)


def end_session(engine: Engine, session_id: str) -> None:
    sessions = t.admin_sessions
    with engine.begin() as conn:
        conn.execute(delete(sessions).where(sessions.c.id_hash == _hash(session_id)))
