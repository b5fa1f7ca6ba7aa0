"""Set-based reads and writes for a batch of postbacks: a few statements per batch instead of
several per postback (in the single writer thread each statement also costs a GIL hand-over).

Every function works inside the caller's connection and transaction; none commits.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from clickloop.domain.conversions import ConversionState
from clickloop.storage import tables as t
from clickloop.storage.conversions import (
    CONVERSION_FIELDS,
    ClickRef,
    StoredConversion,
    state_values,
    stored_conversion,
)

# Keys per IN (...) list: well under SQLite's and PostgreSQL's parameter limits.
_IN_CHUNK = 500
_c = t.conversions.c
_FIND_CLICKS = select(
    t.clicks.c.subid, t.clicks.c.campaign_id, t.clicks.c.offer_id, t.clicks.c.traffic_source_id
).where(t.clicks.c.subid.in_(bindparam("subids", expanding=True)))
# Both IN lists together may also match pairs that were not asked for; the caller's pairs filter
# them out. Locked until the transaction ends on PostgreSQL (a no-op on SQLite's single writer).
_FIND_CONVERSIONS = (
    select(_c.id, _c.subid, _c.tid, *(_c[name] for name in CONVERSION_FIELDS))
    .where(
        and_(
            _c.subid.in_(bindparam("subids", expanding=True)),
            _c.tid.in_(bindparam("tids", expanding=True)),
        )
    )
    .with_for_update()
)
_UPDATE_CONVERSION = update(t.conversions).where(_c.id == bindparam("key_id"))
# Log ids in the order of the rows given. PostgreSQL: SQLAlchemy's "insertmanyvalues" sorts
# them. SQLite: it would do so by inserting one row per statement, so the rows go in multi-row
# statements and their ids are sorted instead: SQLite gives each new row the table's largest
# rowid + 1, so within one writer's statements ids grow in the order of the rows.
_INSERT_RECEIVED = {
    "postgresql": insert(t.received_postbacks).returning(
        t.received_postbacks.c.id, sort_by_parameter_order=True
    ),
    "sqlite": insert(t.received_postbacks).returning(t.received_postbacks.c.id),
}
_INSERT_CONVERSIONS = {
    name: dialect.insert(t.conversions)
    .on_conflict_do_nothing(index_elements=["subid", "tid"])
    .returning(_c.id, _c.subid, _c.tid)
    for name, dialect in (("sqlite", sqlite), ("postgresql", postgresql))
}

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, kw_only=True)
class NewConversion:
    click: ClickRef
    tid: str
    state: ConversionState


def find_clicks(conn: Connection, subids: Collection[str]) -> dict[str, ClickRef]:
    """The clicks among `subids`, by subid."""
    found: dict[str, ClickRef] = {}
    for chunk in _chunks(sorted(subids)):
        for row in conn.execute(_FIND_CLICKS, {"subids": chunk}):
            found[row.subid] = ClickRef(**row._mapping)
    return found


def find_conversions(
    conn: Connection, keys: Collection[tuple[str, str]]
) -> dict[tuple[str, str], StoredConversion]:
    """The conversions with the identities (subid, tid) in `keys`, by identity."""
    found: dict[tuple[str, str], StoredConversion] = {}
    wanted = set(keys)
    for chunk in _chunks(sorted(wanted)):
        subids = sorted({subid for subid, _ in chunk})
        tids = sorted({tid for _, tid in chunk})
        for row in conn.execute(_FIND_CONVERSIONS, {"subids": subids, "tids": tids}):
            if (row.subid, row.tid) in wanted:
                found[(row.subid, row.tid)] = stored_conversion(row._mapping)
    return found


def insert_conversions(
    conn: Connection, rows: Sequence[NewConversion], *, now: datetime
) -> dict[tuple[str, str], int]:
    """Insert new conversions; return the ids by identity. An identity missing from the answer
    was taken meanwhile by a concurrent twin (PostgreSQL with several writers)."""
    if not rows:
        return {}
    values = [
        {
            **state_values(row.state),
            "subid": row.click.subid,
            "tid": row.tid,
            "campaign_id": row.click.campaign_id,
            "offer_id": row.click.offer_id,
            "traffic_source_id": row.click.traffic_source_id,
            "created_at": now,
            "updated_at": now,
        }
        for row in rows
    ]
    statement = _INSERT_CONVERSIONS[conn.dialect.name]
    return {(row.subid, row.tid): row.id for row in conn.execute(statement, values)}


def update_conversions(
    conn: Connection, states: Mapping[int, ConversionState], *, now: datetime
) -> None:
    """Store the new state of each conversion, by id."""
    if states:
        conn.execute(
            _UPDATE_CONVERSION,
            [
                {**state_values(state), "updated_at": now, "key_id": conversion_id}
                for conversion_id, state in states.items()
            ],
        )


def insert_received(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert received-postback log rows; return their ids in the same order."""
    if not rows:
        return []
    dialect = conn.dialect.name
    ids = [row.id for row in conn.execute(_INSERT_RECEIVED[dialect], [dict(r) for r in rows])]
    return sorted(ids) if dialect == "sqlite" else ids


def _chunks(items: Sequence[_T]) -> Iterator[list[_T]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield list(items[start : start + _IN_CHUNK])
