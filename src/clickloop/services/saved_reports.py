"""Saved reports: a name and a report builder query (the body of POST /api/v1/reports/build),
for the views a user opens every day. A query is checked as the builder checks it before it is
stored, and stored as given, so a preset such as last_7_days stays relative."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from clickloop.errors import Conflict, InvalidInput, NotFound
from clickloop.services import entities, report_query
from clickloop.services.queries import MAX_ID
from clickloop.storage import tables as t

MAX_NAME = 200


def list_saved(engine: Engine) -> list[dict[str, Any]]:
    """Every saved report, by name."""
    with engine.connect() as conn:
        rows = conn.execute(select(t.saved_reports).order_by(t.saved_reports.c.name))
        return [dict(row._mapping) for row in rows]


def get_saved(engine: Engine, report_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        return _row(conn, report_id)


def create_saved(engine: Engine, *, name: Any, query: Any, now: datetime) -> dict[str, Any]:
    """Store a new saved report; InvalidInput names the bad field, Conflict a taken name."""
    values = {"name": _name(name), "query": _query(engine, query, now), "updated_at": now}
    try:
        with engine.begin() as conn:
            new_id = conn.execute(
                insert(t.saved_reports).values(created_at=now, **values)
            ).inserted_primary_key
            assert new_id is not None
            return _row(conn, int(new_id[0]))
    except IntegrityError as exc:
        raise Conflict("saved report", values["name"]) from exc


def update_saved(
    engine: Engine, report_id: int, changes: Mapping[str, Any], *, now: datetime
) -> dict[str, Any]:
    """Rename a saved report and/or replace its query."""
    for key in changes:
        if key not in ("name", "query"):
            raise InvalidInput(key, "not a field; a saved report has a name and a query")
    values: dict[str, Any] = {"updated_at": now}
    if "name" in changes:
        values["name"] = _name(changes["name"])
    if "query" in changes:
        values["query"] = _query(engine, changes["query"], now)
    try:
        with engine.begin() as conn:
            _row(conn, report_id)
            conn.execute(
                update(t.saved_reports).where(t.saved_reports.c.id == report_id).values(**values)
            )
            return _row(conn, report_id)
    except IntegrityError as exc:
        raise Conflict("saved report", values["name"]) from exc


def delete_saved(engine: Engine, report_id: int) -> None:
    _check_id(report_id)
    with engine.begin() as conn:
        deleted = conn.execute(delete(t.saved_reports).where(t.saved_reports.c.id == report_id))
        if not deleted.rowcount:
            raise NotFound("saved report", report_id)


def _check_id(report_id: int) -> None:
    # Beyond the column's range no report exists, and the database would refuse the number.
    if not 0 < report_id <= MAX_ID:
        raise NotFound("saved report", report_id)


def _row(conn: Connection, report_id: int) -> dict[str, Any]:
    _check_id(report_id)
    row = conn.execute(select(t.saved_reports).where(t.saved_reports.c.id == report_id)).first()
    if row is None:
        raise NotFound("saved report", report_id)
    return dict(row._mapping)


def _name(value: Any) -> str:
    name = value.strip() if isinstance(value, str) else ""
    if not name or len(name) > MAX_NAME or "\x00" in name:
        raise InvalidInput("name", f"text of 1 to {MAX_NAME} characters")
    return name


def _query(engine: Engine, value: Any, now: datetime) -> dict[str, Any]:
    """The query as the builder would take it, with amounts as text (JSON has no Decimal)."""
    if not isinstance(value, dict):
        raise InvalidInput("query", "a report builder query (a JSON object)")
    query = _plain(value)
    settings = entities.get_settings(engine)
    with engine.connect() as conn:
        types = conn.execute(select(t.conversion_types.c.name)).scalars().all()
    try:
        report_query.parse_query(
            query,
            now=now,
            default_timezone=settings["timezone"],
            conversion_types=report_query.known_types(types),
        )
    except InvalidInput as exc:
        raise InvalidInput(f"query.{exc.field}", exc.reason) from exc
    return dict(query)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value
