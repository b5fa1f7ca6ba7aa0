"""Read-side listings for the API and the UI, with keyset pagination.

Pages are ordered newest first by the primary key and continue from an opaque cursor (the last
key seen), so page 10,000 of a table of millions costs what page 1 costs; OFFSET would not.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, ColumnElement, Select, String, Table, and_, bindparam, or_, select
from sqlalchemy.engine import Engine

from clickloop.domain.clicks import new_subid, subid_time_ms
from clickloop.domain.secrets import NO_SECRETS, DeclaredSecrets, mask_headers, mask_secrets
from clickloop.errors import InvalidInput, NotFound
from clickloop.storage import tables as t
from clickloop.storage.db import reader_engine
from clickloop.storage.partitions import SKEW, WINDOW, is_partitioned, subid_window

# PostgreSQL: the spans back from the newest click a clicks page is looked for in, in turn.
_RECENT_SPANS = (timedelta(days=1), timedelta(days=7), timedelta(days=31))
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_ID = 2**31 - 1


_CLICK = select(t.clicks).where(t.clicks.c.subid == bindparam("subid"))
_CLICK_IN_WINDOW = _CLICK.where(WINDOW)


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


def list_clicks(
    engine: Engine,
    *,
    campaign_id: int | None = None,
    since: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page:
    """Clicks by descending id (time order: storage/partitions.py); a campaign's by time
    (`_clicks_by_time`).

    On PostgreSQL the page is looked for in the last day's partitions first, then the last
    week's and month's, and only then in all: planning a query over ninety partitions costs more
    than reading a page. A page read from recent days is whole when its clicks all carry ids
    made after the span's start (+ the skew): every older click's id is smaller."""
    key = t.clicks.c.subid
    conditions = click_conditions(campaign_id=campaign_id, since=since)
    if campaign_id is not None:
        return _clicks_by_time(engine, conditions, limit, cursor)
    if is_partitioned(engine):
        end = subid_time_ms(cursor) if cursor is not None else None
        latest = datetime.now(UTC) if end is None else datetime.fromtimestamp(end / 1000, UTC)
        # Spares the partitions made ahead (or after the cursor); from the last try on too,
        # which keeps a click dated more than the skew ahead of this clock off the list until
        # then: only a clock that is wrong makes one.
        conditions.append(t.clicks.c.created_at < latest + SKEW)
        for span in _RECENT_SPANS:
            start = latest - span
            within = [*conditions, t.clicks.c.created_at >= start]
            items = _rows(engine, t.clicks, key, within, limit, cursor)
            made_after = new_subid(int((start + SKEW).timestamp() * 1000), 0)
            if len(items) > limit and items[limit]["subid"] >= made_after:
                return _as_page(items, limit, key)
    return _page(engine, t.clicks, key, conditions, limit, cursor)


def get_click(engine: Engine, subid: str) -> dict[str, Any]:
    """The click; on PostgreSQL looked for in the partitions its id's time points at first."""
    window = subid_window(subid)
    with reader_engine(engine).connect() as conn:
        row = None
        if window is not None and is_partitioned(conn):
            row = conn.execute(_CLICK_IN_WINDOW, {"subid": subid, **window.params()}).first()
        if row is None:
            row = conn.execute(_CLICK, {"subid": subid}).first()
    if row is None:
        raise NotFound("click", subid)
    return dict(row._mapping)


def click_conditions(
    *,
    campaign_id: int | None = None,
    traffic_source_id: int | None = None,
    external_id: str | None = None,
    country: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[ColumnElement[bool]]:
    """The clicks log's filters (a subid is looked up directly, with `get_click`)."""
    c = t.clicks.c
    conditions: list[ColumnElement[bool]] = []
    if campaign_id is not None:
        conditions.append(c.campaign_id == campaign_id)
    if traffic_source_id is not None:
        conditions.append(c.traffic_source_id == traffic_source_id)
    if external_id:
        conditions.append(c.external_id == external_id)
    if country:
        conditions.append(c.country == country.upper())
    if since is not None:
        conditions.append(c.created_at >= since)
    if until is not None:
        conditions.append(c.created_at < until)
    return conditions


def search_clicks(
    engine: Engine, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None, **filters: Any
) -> Page:
    """The clicks log newest first (subids sort by time) under `click_conditions` filters;
    a campaign alone, or nothing, is `list_clicks`."""
    if not any(value for name, value in filters.items() if name != "campaign_id"):
        return list_clicks(
            engine, campaign_id=filters.get("campaign_id"), limit=limit, cursor=cursor
        )
    conditions = click_conditions(**filters)
    if filters.get("campaign_id") is not None:
        return _clicks_by_time(engine, conditions, limit, cursor)
    return _page(engine, t.clicks, t.clicks.c.subid, conditions, limit, cursor)


def _clicks_by_time(
    engine: Engine, conditions: list[ColumnElement[bool]], limit: int, cursor: str | None
) -> Page:
    """A campaign's clicks newest first by time, then id: the order of the (campaign, time)
    index, so a page reads a page of its entries (only clicks of one microsecond are sorted
    among themselves); the cursor is the last row's `<time>_<id>`. On PostgreSQL looked for in
    the last day's partitions first, then the last week's and month's: the window is on the
    order's own column, so a window that holds more than a page holds the page."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput("limit", f"from 1 to {MAX_LIMIT}")
    c = t.clicks.c
    conditions = list(conditions)
    latest = datetime.now(UTC)
    if cursor is not None:
        latest, subid = _time_cursor(cursor, c.subid)
        conditions += [c.created_at <= latest, or_(c.created_at < latest, c.subid < subid)]
    query = select(t.clicks).order_by(c.created_at.desc(), c.subid.desc()).limit(limit + 1)
    starts: list[datetime | None] = [None]
    if is_partitioned(engine):
        # Spares the partitions made ahead, as list_clicks does.
        conditions.append(c.created_at < latest + SKEW)
        starts = [*(latest - span for span in _RECENT_SPANS), None]
    with reader_engine(engine).connect() as conn:
        for start in starts:
            within = conditions if start is None else [*conditions, c.created_at >= start]
            items = [dict(row._mapping) for row in conn.execute(query.where(*within))]
            if len(items) > limit:
                break
    last = items[limit - 1] if len(items) > limit else None
    return Page(
        items=items[:limit],
        next_cursor=f"{last['created_at'].isoformat()}_{last['subid']}" if last else None,
    )


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
    """Newest first by conversion time (the time shown; a postback's `date` can put it before
    older ids), then by id; the cursor is the last row's `<time>_<id>`."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput("limit", f"from 1 to {MAX_LIMIT}")
    c = t.conversions.c
    conditions = conversion_conditions(**filters)
    if cursor is not None:
        moment, last_id = _time_cursor(cursor, c.id)
        conditions.append(
            or_(c.converted_at < moment, and_(c.converted_at == moment, c.id < last_id))
        )
    query = (
        select(t.conversions)
        .where(*conditions)
        .order_by(c.converted_at.desc(), c.id.desc())
        .limit(limit + 1)
    )
    with reader_engine(engine).connect() as conn:
        items = [dict(row._mapping) for row in conn.execute(query)]
    more = len(items) > limit
    items = items[:limit]
    last = items[-1] if more else None
    return Page(
        items=items,
        next_cursor=f"{last['converted_at'].isoformat()}_{last['id']}" if last else None,
    )


def _time_cursor(cursor: str, key: Column[Any]) -> tuple[datetime, Any]:
    """A `<time>_<key>` cursor's time and its `key` value (`_cursor_value`)."""
    moment, _, value = cursor.partition("_")
    try:
        when = datetime.fromisoformat(moment) if len(moment) <= 40 else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise InvalidInput("cursor", "not a cursor from a previous page")
    return when, _cursor_value(key, value)


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
    *,
    outcome: str | None = None,
    reason: str | None = None,
    subid: str | None = None,
    since: datetime | None = None,
) -> list[ColumnElement[bool]]:
    """The received-postback log's filters (the page's and the bulk re-process's)."""
    c = t.received_postbacks.c
    conditions: list[ColumnElement[bool]] = []
    if since is not None:
        conditions.append(c.received_at >= since)
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


def conversion_history(engine: Engine, subid: str, conversion_id: int) -> list[dict[str, Any]]:
    """The received postbacks that created or changed a conversion (or repeated it), oldest
    first; looked up by the click's subid, which the log is indexed by."""
    c = t.received_postbacks.c
    query = (
        select(t.received_postbacks)
        .where(c.subid == subid, c.conversion_id == conversion_id)
        .order_by(c.id)
    )
    with reader_engine(engine).connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


# A delivery with the subid of the click whose conversion triggered it (SPEC §4: the log names it
# even when the URL has no {subid}).
_DELIVERY_ROWS = select(t.deliveries, t.conversions.c.subid).select_from(
    t.deliveries.join(t.conversions, t.conversions.c.id == t.deliveries.c.conversion_id)
)


def list_deliveries(
    engine: Engine,
    *,
    state: str | None = None,
    conversion_id: int | None = None,
    target_kind: str | None = None,
    subid: str | None = None,
    target_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page:
    """Deliveries newest first, each with its triggering `subid`, under the given filters
    (`target_id` with `target_kind`; `since`/`until` on the time a delivery was queued)."""
    c = t.deliveries.c
    conditions: list[ColumnElement[bool]] = []
    if state:
        conditions.append(c.state == state)
    if conversion_id is not None:
        conditions.append(c.conversion_id == conversion_id)
    if target_kind:
        conditions.append(c.target_kind == target_kind)
    if subid:
        conditions.append(t.conversions.c.subid == subid)
    if target_id is not None:
        conditions.append(c.target_id == target_id)
    if since is not None:
        conditions.append(c.created_at >= since)
    if until is not None:
        conditions.append(c.created_at < until)
    return _page(engine, t.deliveries, c.id, conditions, limit, cursor, rows=_DELIVERY_ROWS)


# What the API and the CLI show of a delivery (its body and lease stay inside).
_SHOWN_DELIVERY_FIELDS = (
    "id",
    "conversion_id",
    "subid",
    "target_kind",
    "target_id",
    "method",
    "url",
    "headers",
    "state",
    "attempts",
    "next_attempt_at",
    "last_error",
    "warnings",
    "created_at",
    "delivered_at",
)


def shown_delivery(row: dict[str, Any], declared: DeclaredSecrets = NO_SECRETS) -> dict[str, Any]:
    """A delivery row as shown outside the UI: the listed fields, secrets masked (from
    `get_delivery`, `attempts` is the list of attempts, shown as `shown_attempt`)."""
    shown = {name: row[name] for name in _SHOWN_DELIVERY_FIELDS}
    shown["url"] = mask_secrets(row["url"], declared)
    shown["headers"] = mask_headers(row["headers"], declared)
    shown["last_error"] = _masked(row["last_error"], declared)
    shown["warnings"] = list(row["warnings"] or ())
    if isinstance(row["attempts"], list):
        shown["attempts"] = [shown_attempt(attempt, declared) for attempt in row["attempts"]]
    return shown


def shown_attempt(row: dict[str, Any], declared: DeclaredSecrets = NO_SECRETS) -> dict[str, Any]:
    """An attempt as shown: its URL, response and error masked again with what is declared now
    (they were stored masked by name pattern only)."""
    masked = {name: _masked(row[name], declared) for name in ("url", "response", "error")}
    return row | masked


def _masked(text: str | None, declared: DeclaredSecrets) -> str | None:
    return None if text is None else mask_secrets(text, declared)


def get_delivery(engine: Engine, delivery_id: int) -> dict[str, Any]:
    """A delivery with its triggering `subid` and its attempts, oldest first."""
    with reader_engine(engine).connect() as conn:
        row = conn.execute(_DELIVERY_ROWS.where(t.deliveries.c.id == delivery_id)).first()
    if row is None:
        raise NotFound("delivery", delivery_id)
    delivery = dict(row._mapping)
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
    *,
    rows: Select[Any] | None = None,
) -> Page:
    """A page of `rows` (default: the whole rows of `table`) by descending `key`."""
    return _as_page(_rows(engine, table, key, conditions, limit, cursor, rows=rows), limit, key)


def _rows(
    engine: Engine,
    table: Table,
    key: Column[Any],
    conditions: list[ColumnElement[bool]],
    limit: int,
    cursor: str | None,
    *,
    rows: Select[Any] | None = None,
) -> list[dict[str, Any]]:
    """Up to `limit` + 1 rows by descending `key` (one more tells whether a page follows)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput("limit", f"from 1 to {MAX_LIMIT}")
    base = rows if rows is not None else select(table)
    query = base.where(*conditions).order_by(key.desc()).limit(limit + 1)
    if cursor is not None:
        query = query.where(key < _cursor_value(key, cursor))
    with reader_engine(engine).connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def _as_page(items: list[dict[str, Any]], limit: int, key: Column[Any]) -> Page:
    more = len(items) > limit
    items = items[:limit]
    return Page(items=items, next_cursor=str(items[-1][key.name]) if more else None)


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
