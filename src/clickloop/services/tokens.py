"""API tokens: shown once at creation, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine

from clickloop.errors import InvalidInput, NotFound
from clickloop.storage import tables as t

TOKEN_PREFIX = "clk_"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def create_token(engine: Engine, *, name: str, now: datetime) -> str:
    """Create a token and return it in clear, the only time it is ever visible."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput("name", "required, at most 100 characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(
            insert(t.api_tokens).values(name=name, token_hash=_digest(token), created_at=now)
        )
    return token


def verify_token(engine: Engine, token: str, *, now: datetime) -> int | None:
    """The token's id when it is valid, else None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    with engine.begin() as conn:
        found = conn.execute(
            select(t.api_tokens.c.id).where(t.api_tokens.c.token_hash == _digest(token))
        ).scalar()
        if found is not None:
            conn.execute(
                update(t.api_tokens).where(t.api_tokens.c.id == found).values(last_used_at=now)
            )
    return int(found) if found is not None else None


def list_tokens(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                t.api_tokens.c.id,
                t.api_tokens.c.name,
                t.api_tokens.c.created_at,
                t.api_tokens.c.last_used_at,
            ).order_by(t.api_tokens.c.id)
        )
        return [dict(row._mapping) for row in rows]


def revoke_token(engine: Engine, token_id: int) -> None:
    with engine.begin() as conn:
        if conn.execute(delete(t.api_tokens).where(t.api_tokens.c.id == token_id)).rowcount == 0:
            raise NotFound("api token", token_id)
