"""API tokens: shown once at creation, stored only as a SHA-256 hash. A token has a role, as
users do (services/users.py): an analyst's token reads and never changes anything."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine

from clickloop.errors import InvalidInput, NotFound
from clickloop.services.users import ADMIN, check_role
from clickloop.storage import tables as t

TOKEN_PREFIX = "clk_"


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenHolder:
    """Who a valid token speaks for: the token's id and role."""

    id: int
    role: str

    @property
    def can_change(self) -> bool:
        return self.role == ADMIN


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def create_token(engine: Engine, *, name: str, now: datetime, role: str = ADMIN) -> str:
    """Create a token and return it in clear, the only time it is ever visible."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput("name", "required, at most 100 characters")
    role = check_role(role)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(
            insert(t.api_tokens).values(
                name=name, token_hash=_digest(token), created_at=now, role=role
            )
        )
    return token


def verify_token(engine: Engine, token: str, *, now: datetime) -> TokenHolder | None:
    """Whom the token speaks for when it is valid, else None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    c = t.api_tokens.c
    with engine.begin() as conn:
        found = conn.execute(select(c.id, c.role).where(c.token_hash == _digest(token))).first()
        if found is not None:
            conn.execute(update(t.api_tokens).where(c.id == found.id).values(last_used_at=now))
    return None if found is None else TokenHolder(id=found.id, role=found.role)


def list_tokens(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                t.api_tokens.c.id,
                t.api_tokens.c.name,
                t.api_tokens.c.role,
                t.api_tokens.c.created_at,
                t.api_tokens.c.last_used_at,
            ).order_by(t.api_tokens.c.id)
        )
        return [dict(row._mapping) for row in rows]


def revoke_token(engine: Engine, token_id: int) -> None:
    with engine.begin() as conn:
        if conn.execute(delete(t.api_tokens).where(t.api_tokens.c.id == token_id)).rowcount == 0:
            raise NotFound("api token", token_id)
