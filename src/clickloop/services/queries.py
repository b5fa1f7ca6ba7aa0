"""Read-side listings for the API and the UI, with keyset pagination.

Pages are ordered newest first by the primary key and continue from an opaque cursor (the last
key seen), so page 10,000 of a table of millions costs what page 1 costs; OFFSET would not.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, ColumnElement, String, Table, select
from sqlalchemy.engine import Engine

from clickloop.domain.deliveries import mask_secrets
from clickloop.errors import InvalidInput, NotFound
from clickloop.storage import tables as t
from clickloop.storage.db import reader_engine

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_ID = 2**31 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


def list_clicks(
    engine: Engine,
    *,
    campaign_id: int | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page:
    conditions = [t.clicks.c.campaign_id == campaign_id] if campaign_id is not None else []
    return _page(engine, t.clicks, t.clicks.c.subid, conditions, limit, cursor)


def get_click(engine: Engine, subid: str) -> dict[str, Any]:
    return _one(engine, t.clicks, t.clicks.c.subid == subid, "click", subid)


def conversion_conditions(
    *,
    campaign_id: int | None = None,
    type: str | None = None,
    subid: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[ColumnElement[bool]]:
    c = t.conversions.c
    conditions: list[ColumnElement[bool]] = []
    if campaign_id is not None:
        conditions.append(c.campaign_id == campaign_id)
    if type:
        conditions.append(c.type == type)
    if subid:
        conditions.append(c.subid == subid)
    if since is not None:
        conditions.append(c.converted_at >= since)
    if until is not None:
        conditions.append(c.converted_at < until)
    return conditions


def list_conversions(
    engine: Engine, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None, **filters: Any
) -> Page:
    return _page(
        engine, t.conversions, t.conversions.c.id, conversion_conditions(**filters), limit, cursor
    )


def iter_conversions(engine: Engine, **filters: Any) -> Iterator[dict[str, Any]]:
    """Every matching conversion, newest first, read a page at a time (for CSV export)."""
    cursor: str | None = None
    while True:
        page = list_conversions(engine, limit=MAX_LIMIT, cursor=cursor, **filters)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def get_conversion(engine: Engine, conversion_id: int) -> dict[str, Any]:
    return _one(
        engine, t.conversions, t.conversions.c.id == conversion_id, "conversion", conversion_id
    )


def received_conditions(
    *, outcome: str | None = None, reason: str | None = None, subid: str | None = None
) -> list[ColumnElement[bool]]:
    """The received-postback log's filters (the page's and the bulk re-process's)."""
    c = t.received_postbacks.c
    conditions: list[ColumnElement[bool]] = []
    if outcome:
        conditions.append(c.outcome == outcome)
    if reason:
        conditions.append(c.reason.contains(reason, autoescape=True))
    if subid:
        conditions.append(c.subid == subid)
    return conditions


def list_received_postbacks(
    engine: Engine, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None, **filters: Any
) -> Page:
    conditions = received_conditions(**filters)
    return _page(engine, t.received_postbacks, t.received_postbacks.c.id, conditions, limit, cursor)


def list_deliveries(
    engine: Engine,
    *,
    state: str | None = None,
    conversion_id: int | None = None,
    target_kind: str | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page:
    c = t.deliveries.c
    conditions: list[ColumnElement[bool]] = []
    if state:
        conditions.append(c.state == state)
    if conversion_id is not None:
        conditions.append(c.conversion_id == conversion_id)
    if target_kind:
        conditions.append(c.target_kind == target_kind)
    return _page(engine, t.deliveries, c.id, conditions, limit, cursor)


# What the API and the CLI show of a delivery (its body and lease stay inside).
_SHOWN_DELIVERY_FIELDS = (
    "id",
    "conversion_id",
    "target_kind",
    "target_id",
    "method",
    "url",
    "state",
    "attempts",
    "next_attempt_at",
    "last_error",
    "warnings",
    "created_at",
    "delivered_at",
)


def shown_delivery(row: dict[str, Any]) -> dict[str, Any]:
    """A delivery row as shown outside the UI: the listed fields, secrets in the URL masked
    (from `get_delivery`, `attempts` is the list of attempts)."""
    shown = {name: row[name] for name in _SHOWN_DELIVERY_FIELDS}
    shown["url"] = mask_secrets(row["url"])
    shown["warnings"] = list(row["warnings"] or ())
    return shown


def get_delivery(engine: Engine, delivery_id: int) -> dict[str, Any]:
    """A delivery with its attempts, oldest first."""
    delivery = _one(engine, t.deliveries, t.deliveries.c.id == delivery_id, "delivery", delivery_id)
    delivery["attempts"] = list_attempts(engine, delivery_id)
    return delivery


def list_attempts(engine: Engine, delivery_id: int) -> list[dict[str, Any]]:
    """Every attempt of one delivery, oldest first (URLs and responses already masked)."""
    with reader_engine(engine).connect() as conn:
        attempts = conn.execute(
            select(t.delivery_attempts)
            .where(t.delivery_attempts.c.delivery_id == delivery_id)
            .order_by(t.delivery_attempts.c.id)
        )
        return [dict(row._mapping) for row in attempts]


def _page(
    engine: Engine,
    table: Table,
    key: Column[Any],
    conditions: list[ColumnElement[bool]],
    limit: int,
    cursor: str | None,
) -> Page:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput("limit", f"from 1 to {MAX_LIMIT}")
    query = select(table).where(*conditions).order_by(key.desc()).limit(limit + 1)
    if cursor is not None:
        query = query.where(key < _cursor_value(key, cursor))
    with reader_engine(engine).connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(items=rows, next_cursor=str(rows[-1][key.name]) if more else None)


def _cursor_value(key: Column[Any], cursor: str) -> Any:
    if isinstance(key.type, String):  # a click id: ASCII letters and digits
        if len(cursor) > 64 or not (cursor.isascii() and cursor.isalnum()):
            raise InvalidInput("cursor", "not a cursor from a previous page")
        return cursor
    # Integer keys are 32-bit: a larger number is no key a page could have ended on.
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 10 or int(cursor) > MAX_ID:
        raise InvalidInput("cursor", "not a cursor from a previous page")
    return int(cursor)


def _one(
    engine: Engine, table: Table, condition: ColumnElement[bool], kind: str, key: object
) -> dict[str, Any]:
    with reader_engine(engine).connect() as conn:
        row = conn.execute(select(table).where(condition)).first()
    if row is None:
        raise NotFound(kind, key)
    return dict(row._mapping)
