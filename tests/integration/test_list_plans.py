"""List pages read an index in their own order (no sort of a whole campaign or state), and the
clicks list pages through every click exactly once on PostgreSQL's partitions too."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert
from sqlalchemy.engine import Engine

from clickloop.domain.clicks import new_subid
from clickloop.errors import InvalidInput
from clickloop.services import queries, retention
from clickloop.storage import tables as t

NOW = datetime.now(UTC)


@contextmanager
def last_select(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The SELECT statements run meanwhile, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", capture)


LISTS: list[tuple[str, Callable[..., queries.Page], dict[str, Any], str]] = [
    ("clicks", queries.list_clicks, {}, "sqlite_autoindex_clicks_1"),
    (
        "clicks of a campaign",
        queries.list_clicks,
        {"campaign_id": 1},
        "ix_clicks_campaign_id_created_at",
    ),
    ("conversions", queries.list_conversions, {}, "ix_conversions_converted_at_id"),
    (
        "conversions of a campaign",
        queries.list_conversions,
        {"campaign_id": 1},
        "ix_conversions_campaign_id_converted_at",
    ),
    ("received postbacks", queries.list_received_postbacks, {}, "SCAN received_postbacks"),
    (
        "received postbacks by outcome",
        queries.list_received_postbacks,
        {"outcome": "ignored"},
        "ix_received_postbacks_outcome_id",
    ),
    ("deliveries", queries.list_deliveries, {}, "SCAN deliveries"),
    ("deliveries by state", queries.list_deliveries, {"state": "failed"}, "ix_deliveries_state_id"),
]


@pytest.mark.parametrize(("name", "listing", "filters", "index"), LISTS, ids=[c[0] for c in LISTS])
def test_sqlite_list_pages_follow_an_index(
    engine: Engine, name: str, listing: Callable[..., queries.Page], filters: Any, index: str
) -> None:
    """SQLite's plan for each list page walks an index (or the table's own order) in the
    page's order: no temporary B-tree sorts the matching rows first (a campaign's clicks sort
    only the clicks of one microsecond among themselves: the RIGHT PART of the order)."""
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's plans depend on its statistics; see the partitions test")
    with last_select(engine) as seen:
        listing(engine, **filters)
    statement, params = seen[-1]
    with engine.connect() as conn:
        plan = " | ".join(
            row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)
        )
    assert index in plan
    assert "TEMP B-TREE FOR ORDER BY" not in plan


def test_clicks_list_reads_recent_partitions_and_pages_through_all(engine: Engine) -> None:
    """Clicks of the last hours, days, weeks and months, under two campaigns, paged 7 at a
    time, come out each once, by descending id; on PostgreSQL a first page of recent clicks
    is read from the last day's partitions only."""
    if engine.dialect.name == "postgresql":
        retention.maintain(engine, NOW - timedelta(days=70), 0)
        retention.maintain(engine, NOW - timedelta(days=35), 0)
        retention.maintain(engine, NOW - timedelta(days=7), 0)
    rows = []
    for hours in [0.1, 0.5, 2, 5, 20, 30, 50, 100, 200, 400, 800, 1500] * 2:
        at = NOW - timedelta(hours=hours + random.random())
        subid = new_subid(int(at.timestamp() * 1000), random.getrandbits(64))
        rows.append({"subid": subid, "created_at": at, "campaign_id": random.choice((1, 2))})
    with engine.begin() as conn:
        conn.execute(insert(t.clicks), rows)
    for campaign in (None, 1):
        expected = sorted(
            (r["subid"] for r in rows if campaign in (None, r["campaign_id"])), reverse=True
        )
        listed: list[str] = []
        cursor = None
        while True:
            page = queries.list_clicks(engine, campaign_id=campaign, limit=7, cursor=cursor)
            listed += [item["subid"] for item in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert listed == expected
    if engine.dialect.name == "postgresql":
        with last_select(engine) as seen:
            queries.list_clicks(engine, limit=3)
        statement, params = seen[-1]
        with engine.connect() as conn:
            plan = "\n".join(conn.exec_driver_sql(f"EXPLAIN {statement}", params).scalars())
        assert len(seen) == 1
        assert plan.count("Index Scan Backward") <= 2


def test_a_campaigns_clicks_page_by_time_then_id(engine: Engine) -> None:
    """A campaign's clicks come newest first by time, clicks of the same moment by descending
    id, each once across pages, whatever their ids say (imported ones carry no time); a cursor
    from elsewhere is refused."""
    moments = [NOW - timedelta(minutes=m) for m in (1, 1, 1, 5, 90, 90, 60 * 30)]
    rows = [
        {"subid": f"imported{n}", "created_at": at, "campaign_id": 3}
        for n, at in zip((4, 2, 9, 1, 7, 3, 5), moments, strict=True)
    ]
    rows.append({"subid": "other1", "created_at": NOW, "campaign_id": 4})
    with engine.begin() as conn:
        conn.execute(insert(t.clicks), rows)
    expected = [r["subid"] for r in sorted(rows[:-1], key=lambda r: (r["created_at"], r["subid"]))]
    listed: list[str] = []
    cursor = None
    while True:
        page = queries.list_clicks(engine, campaign_id=3, limit=2, cursor=cursor)
        listed += [item["subid"] for item in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert listed == expected[::-1]
    assert [i["subid"] for i in queries.search_clicks(engine, campaign_id=3, limit=3).items] == (
        expected[::-1][:3]
    )
    with pytest.raises(InvalidInput):
        queries.list_clicks(engine, campaign_id=3, cursor="imported4")
