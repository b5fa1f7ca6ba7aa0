"""Click partitions, retention (prune) and click lookups by id, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select
from sqlalchemy.engine import Engine

from clickloop.cli import main
from clickloop.domain.clicks import new_subid
from clickloop.domain.postbacks import Outcome
from clickloop.services import entities, postbacks, queries, retention
from clickloop.services.postbacks import RawPostback
from clickloop.storage import partitions
from clickloop.storage import tables as t
from clickloop.storage.click_visitors import micros_of
from clickloop.storage.conversion_batches import find_clicks
from clickloop.storage.conversions import find_click
from clickloop.storage.sqlite_driver import sqlite3
from tests.integration.test_report_cubes import cube_rows
from tests.postback_world import World, make_world

NOW = datetime.now(UTC).replace(microsecond=0)
TODAY = NOW.date()


@pytest.fixture
def world(engine: Engine) -> World:
    return make_world(engine)


def click_made_at(at: datetime, campaign_id: int, **fields: Any) -> dict[str, Any]:
    """A click as the click path makes it: its id carries its creation time."""
    subid = new_subid(int(at.timestamp() * 1000), random.getrandbits(64))
    return {"subid": subid, "created_at": at, "campaign_id": campaign_id, **fields}


def store(engine: Engine, rows: list[dict[str, Any]]) -> list[str]:
    with engine.begin() as conn:
        conn.execute(insert(t.clicks), rows)
    return [row["subid"] for row in rows]


def stored_subids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(t.clicks.c.subid)).scalars())


def partitions_of(engine: Engine) -> dict[str, int]:
    """Each partition of clicks with its row count (PostgreSQL)."""
    with engine.connect() as conn:
        names = conn.exec_driver_sql(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'clicks'::regclass"
        ).scalars()
        return {
            name: conn.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar_one()
            for name in list(names)
        }


def test_partitions_made_ahead_and_a_default_one_takes_any_day(
    engine: Engine, world: World
) -> None:
    """Maintenance makes today's and the next 7 days' partitions; a click of a day without one
    lands in the default partition and moves into its day's partition when that is made."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite keeps one clicks table")
    later = TODAY + timedelta(days=20)
    retention.maintain(engine, NOW + timedelta(days=20), 0)
    with engine.connect() as conn:
        days = set(partitions.partition_days(conn))
    assert {later + timedelta(days=n) for n in range(8)} <= days
    far = datetime.combine(later + timedelta(days=30), datetime.min.time(), UTC)
    (subid,) = store(engine, [click_made_at(far + timedelta(hours=3), world.campaign_id)])
    assert partitions_of(engine)["clicks_default"] == 1
    retention.maintain(engine, far, 0)
    counts = partitions_of(engine)
    assert counts["clicks_default"] == 0
    assert counts[partitions.partition_name(far.date())] == 1
    assert stored_subids(engine) == {subid}


def test_prune_drops_old_clicks_and_keeps_conversions_and_aggregates(
    engine: Engine, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """`clickloop prune --clicks-older-than 90d`: clicks of days before the horizon go (whole
    UTC days), younger ones stay; conversions, the postback log and report aggregates stay; a
    late postback for a pruned click is ignored as not found. --dry-run deletes nothing."""
    old_day = TODAY - timedelta(days=100)
    if engine.dialect.name == "postgresql":  # as if clickloop had served 100 days ago
        retention.maintain(engine, datetime.combine(old_day, datetime.min.time(), UTC), 0)
    old = [
        click_made_at(NOW - timedelta(days=days, hours=h), world.campaign_id)
        for days in (100, 95, 91)
        for h in (0, 5)
    ]
    stray = {**click_made_at(NOW - timedelta(days=300), world.campaign_id), "subid": "imported1"}
    kept = [click_made_at(NOW - timedelta(days=days), world.campaign_id) for days in (1, 30, 89)]
    store(engine, [*old, stray, *kept])
    convert(engine, old[0]["subid"], "t1")
    aggregates = cube_rows(engine)
    assert aggregates

    argv = ["--database-url", engine.url.render_as_string(hide_password=False)]
    assert main([*argv, "prune", "--clicks-older-than", "90d", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("would delete 7 clicks created before")
    assert len(stored_subids(engine)) == 10

    assert main([*argv, "prune", "--clicks-older-than", "90d"]) == 0
    assert capsys.readouterr().out.startswith("deleted 7 clicks created before")
    assert stored_subids(engine) == {row["subid"] for row in kept}
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.conversions)).scalar_one() == 1
    assert cube_rows(engine) == aggregates
    if engine.dialect.name == "postgresql":
        gone = [partitions.partition_name(old_day + timedelta(days=n)) for n in range(10)]
        assert not set(gone) & set(partitions_of(engine))
    late = convert(engine, old[0]["subid"], "t1", status="sale")
    assert (late.outcome, late.reason) == (Outcome.IGNORED, f"subid not found: {old[0]['subid']}")


def test_prune_on_sqlite_deletes_in_bounded_chunks(
    engine: Engine, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite deletes a bounded number of clicks per transaction, campaign by campaign."""
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL drops partitions")
    other = make_other_campaign(engine)
    monkeypatch.setattr(retention, "CHUNK_ROWS", 3)
    monkeypatch.setattr(retention, "PAUSE_SECONDS", 0)
    old = NOW - timedelta(days=40)
    store(engine, [click_made_at(old, c) for c in (world.campaign_id, other) for _ in range(4)])
    plan = retention.plan_prune(engine, retention.horizon(NOW, 30))
    assert plan.clicks == 8
    assert list(retention.prune(engine, plan)) == [3, 1, 3, 1]
    assert stored_subids(engine) == set()


def _stat_rows(engine: Engine, table: str) -> str | None:
    """The row count SQLite's statistics hold for `table`, if any."""
    with engine.connect() as conn:
        found = conn.exec_driver_sql(
            "SELECT stat FROM sqlite_stat1 WHERE tbl = ? AND idx LIKE 'sqlite_autoindex%'",
            (table,),
        ).scalar()
    return None if found is None else str(found).split()[0]


def test_statistics_on_sqlite_count_a_table_only_when_it_changed_manyfold(
    engine: Engine, world: World
) -> None:
    """SQLite 3.46+ analyzes a table that has no statistics, and leaves one whose size has not
    changed manyfold: its ANALYZE counts the rows while it holds the writers' lock (5.2 s for
    10M clicks from disk), which a daily refresh of every table would cost the clicks."""
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's ANALYZE takes no lock that writers wait for")
    if not retention.SQLITE_OPTIMIZES:
        pytest.skip(f"SQLite {sqlite3.sqlite_version} has no PRAGMA optimize of every table")
    store(engine, [click_made_at(NOW, world.campaign_id) for _ in range(3)])
    retention.refresh_statistics(engine)
    assert _stat_rows(engine, "clicks") == "3"
    store(engine, [click_made_at(NOW, world.campaign_id) for _ in range(2)])
    retention.refresh_statistics(engine)
    assert _stat_rows(engine, "clicks") == "3"
    store(engine, [click_made_at(NOW, world.campaign_id) for _ in range(200)])
    retention.refresh_statistics(engine)
    assert _stat_rows(engine, "clicks") == "205"


def test_statistics_on_an_older_sqlite_take_the_writers_lock_a_table_at_a_time(
    engine: Engine, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without PRAGMA optimize of every table (SQLite before 3.46), every table gets
    statistics, each in a transaction of its own, so the writers wait for one table at most."""
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's ANALYZE takes no lock that writers wait for")
    monkeypatch.setattr(retention, "SQLITE_OPTIMIZES", False)
    store(engine, [click_made_at(NOW, world.campaign_id) for _ in range(3)])
    analyzed: list[str] = []
    per_transaction: list[int] = [0]

    def seen(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("ANALYZE"):
            analyzed.append(statement.split()[1].strip('"'))
            per_transaction[-1] += 1

    event.listen(engine, "before_cursor_execute", seen)
    event.listen(engine, "commit", lambda conn: per_transaction.append(0))
    retention.refresh_statistics(engine)
    assert sorted(analyzed) == sorted(table.name for table in t.metadata.sorted_tables)
    assert max(per_transaction) == 1
    assert _stat_rows(engine, "clicks") == "3"


def test_clicks_after_a_prune_of_every_click_reach_the_aggregates(
    engine: Engine, world: World
) -> None:
    """SQLite hands the rowids of deleted newest clicks out again: the cubes' watermark goes
    back with them, so the clicks that take those rowids are counted."""
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL leaves new clicks in cube_moves, not behind a watermark")
    store(engine, [click_made_at(NOW - timedelta(days=40), world.campaign_id) for _ in range(3)])
    before = cube_rows(engine)
    list(retention.prune(engine, retention.plan_prune(engine, retention.horizon(NOW, 30))))
    assert stored_subids(engine) == set()
    assert cube_rows(engine) == before
    store(engine, [click_made_at(NOW, world.campaign_id) for _ in range(2)])
    counted = {
        key: value for key, value in cube_rows(engine).items() if key[0] == "report_campaigns"
    }
    hour = int(NOW.timestamp()) // 3600
    assert [values[0] for (_, key), values in counted.items() if key[0] == hour] == [2]


def test_clicks_are_found_by_id_whether_or_not_it_carries_a_time(
    engine: Engine, world: World
) -> None:
    """A new click, an old one (another partition), one whose id carries no time and one whose
    id's time is far from its created_at are all found: one at a time, in a batch, by the API;
    an unknown id is not."""
    if engine.dialect.name == "postgresql":
        retention.maintain(engine, NOW - timedelta(days=60), 0)
    new = click_made_at(NOW, world.campaign_id)
    old = click_made_at(NOW - timedelta(days=58), world.campaign_id)
    imported = {**click_made_at(NOW - timedelta(days=59), world.campaign_id), "subid": "kt-123"}
    moved = {**click_made_at(NOW - timedelta(days=57), world.campaign_id), "created_at": NOW}
    subids = store(engine, [new, old, imported, moved])
    unknown = new_subid(int(NOW.timestamp() * 1000), 1)
    with engine.begin() as conn:
        for subid in subids:
            found = find_click(conn, subid)
            assert found is not None and found.subid == subid
        assert find_click(conn, unknown) is None
        assert set(find_clicks(conn, [*subids, unknown])) == set(subids)
    for subid in subids:
        assert queries.get_click(engine, subid)["subid"] == subid


def test_a_click_lookup_reads_only_the_partitions_of_its_ids_time(
    engine: Engine, world: World
) -> None:
    """PostgreSQL's plan for a click id made today touches today's partition (and at most its
    neighbour), not the 60 days of others."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite keeps one clicks table")
    retention.maintain(engine, NOW - timedelta(days=60), 0)
    (subid,) = store(engine, [click_made_at(NOW, world.campaign_id)])
    window = partitions.subid_window(subid)
    assert window is not None
    with engine.connect() as conn:
        plan = "\n".join(
            conn.exec_driver_sql(
                "EXPLAIN SELECT * FROM clicks WHERE subid = %(s)s "
                "AND created_at >= %(a)s AND created_at < %(b)s",
                {"s": subid, "a": window.start, "b": window.end},
            ).scalars()
        )
    scanned = {name for name in partitions_of(engine) if name in plan}
    assert partitions.partition_name(TODAY) in scanned
    assert len(scanned) <= 2


def convert(engine: Engine, subid: str, tid: str, status: str = "lead") -> Any:
    query = f"subid={subid}&tid={tid}&status={status}"
    raw = RawPostback(received_at=NOW, method="GET", query=query)
    with engine.begin() as conn:
        return postbacks.process_postback(conn, raw, postbacks.load_rules(conn), now=NOW)


def make_other_campaign(engine: Engine) -> int:
    return entities.create_campaign(engine, name="Other", alias="other", now=NOW, offers=[])


@pytest.mark.parametrize("given", ["90x", "0d", "-3d", "d", "ninety"])
def test_prune_refuses_what_is_not_a_number_of_days(
    given: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad --clicks-older-than is a usage error naming the option, not a traceback."""
    with pytest.raises(SystemExit) as stopped:
        main(["prune", f"--clicks-older-than={given}"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--clicks-older-than" in error and "not a number of days such as 90d" in error


def test_maintenance_forgets_visitors_older_than_the_unique_window(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hourly maintenance drops the visitors whose last click is older than 24 hours, a
    bounded chunk per transaction; the others stay, so their next click is not unique."""
    monkeypatch.setattr(retention, "CHUNK_ROWS", 2)
    monkeypatch.setattr(retention, "PAUSE_SECONDS", 0)
    ages = {1: 25, 2: 30, 3: 48, 4: 23, 5: 1}  # visitor -> hours since the last click
    with engine.begin() as conn:
        conn.execute(
            insert(t.click_visitors),
            [
                {"campaign_id": 1, "visitor": v, "last_us": micros_of(NOW - timedelta(hours=h))}
                for v, h in ages.items()
            ],
        )
    retention.maintain(engine, NOW, 0, analyze=False)
    with engine.connect() as conn:
        kept = conn.execute(select(t.click_visitors.c.visitor)).scalars().all()
    assert sorted(kept) == [4, 5]
    assert list(retention.forget_visitors(engine, NOW)) == [0]
