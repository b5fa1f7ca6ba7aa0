"""The report cubes stay equal to what the raw tables say: clicks through the group-commit writer
and postbacks through the real services (single and batch paths, status changes, rebills, cost
and sub_id overwrites, other dates) leave exactly the cubes a rebuild computes, the hourly ones
and the daily ones in a zone with a DST change (New York) or a half-hour offset (Kolkata)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Engine

from clickloop.domain import report_facts as rf
from clickloop.services import entities
from clickloop.services import postbacks as service
from clickloop.services.postback_batches import PendingPostback, process_postbacks
from clickloop.services.postbacks import RawPostback
from clickloop.services.report_builder import run_report
from clickloop.services.report_query import known_types, parse_query
from clickloop.services.visitors import enrich_click
from clickloop.storage import cube_spans, report_cubes
from clickloop.storage import tables as t
from clickloop.storage.writer import GroupCommitWriter
from tests.postback_world import make_world

START = datetime(2026, 10, 31, 22, 0, tzinfo=UTC)  # New York leaves summer time 32 hours later
START_DAY = (START.date() - date(1970, 1, 1)).days
ZONES = ("UTC", "America/New_York", "Asia/Kolkata")
STATUSES = ("lead", "sale", "approved", "declined", "rejected", "rebill", "trash", "deposit")
COUNTRIES = (None, "DE", "US")
AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1",
)

clicks_strategy = st.lists(
    st.tuples(
        st.integers(0, 1),  # offer
        st.sampled_from(COUNTRIES),
        st.integers(0, 1),  # user agent
        st.sampled_from(["10.0.0.1", "10.0.0.2"]),
        st.sampled_from([None, "0.25", "1.5"]),  # cost recorded with the click
        st.sampled_from([None, "z1", "z2"]),  # sub_id_1
        st.integers(0, 48 * 60),  # minutes after START
    ),
    min_size=1,
    max_size=12,
)
postbacks_strategy = st.lists(
    st.tuples(
        st.integers(0, 11),  # which click
        st.sampled_from(["", "a", "b"]),  # tid
        st.sampled_from(STATUSES),
        st.sampled_from(["", "3", "7.5"]),  # payout
        st.sampled_from(["", "0.4", "2"]),  # cost
        st.sampled_from(["", "z3"]),  # sub_id_1 overwrite
        st.integers(-60, 72 * 60),  # conversion date, minutes after START
        st.booleans(),  # in a batch with the next ones, or alone
    ),
    max_size=16,
)


def store_clicks(engine: Engine, rows: list[dict[str, Any]], *, follow: bool = False) -> None:
    """Through the writer the server uses, with its report hook, a few rows per batch; with
    `follow`, the followers fold them into the cubes after each batch (SQLite's by the
    watermark, PostgreSQL's from `cube_moves`), as a server's do every FOLLOW_INTERVAL."""

    async def run() -> None:
        writer = GroupCommitWriter(engine, before_insert=report_cubes.add_clicks)
        writer.start()
        try:
            for start in range(0, len(rows), 3):
                await asyncio.gather(
                    *(writer.insert(t.clicks, row, enrich_click) for row in rows[start : start + 3])
                )
                if follow:
                    await report_cubes.follow(engine, writer.run)
                    await report_cubes.follow_moves(engine, writer.run)
        finally:
            await writer.stop()

    asyncio.run(run())


CUBE_TABLES = t.report_aggregates


def cube_rows(engine: Engine) -> dict[tuple[str, tuple[Any, ...]], tuple[Any, ...]]:
    """The cubes' rows that hold something, once they hold every click (as a report reads)."""
    report_cubes.settle(engine)
    found = {}
    with engine.connect() as conn:
        for table in CUBE_TABLES:
            for row in conn.execute(select(table)):
                fields = row._mapping
                values = tuple(fields[name] for name in rf.VALUES)
                if any(values):
                    key = tuple(fields[column.name] for column in table.primary_key)
                    found[(table.name, key)] = values
    return found


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    clicks=clicks_strategy,
    postbacks=postbacks_strategy,
    zone=st.sampled_from(ZONES),
    fold_each_batch=st.booleans(),
    sealed=st.tuples(st.integers(-2, 4), st.integers(0, 3)),
    seal_chunk=st.sampled_from([1, 3, cube_spans.SEAL_CHUNK]),
)
def test_incremental_cubes_equal_a_rebuild(
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    clicks: list[Any],
    postbacks: list[Any],
    zone: str,
    fold_each_batch: bool,
    sealed: tuple[int, int],
    seal_chunk: int,
) -> None:
    """Whatever clicks and postbacks arrive, the cubes kept on the way equal a rebuild, with
    the spans of several days sealed up to any day before, among or after the clicks' and
    sealed a few days further between the clicks and the postbacks, then up to "today", a week
    after the clicks (a chunk of 1, 3 or SEAL_CHUNK keys per transaction)."""
    monkeypatch.setattr(report_cubes, "_today", lambda zone: START_DAY + 7)
    monkeypatch.setattr(cube_spans, "SEAL_CHUNK", seal_chunk)
    with engine.begin() as conn:
        for table in [t.received_postbacks, t.conversions, t.clicks]:
            conn.execute(delete(table))
        report_cubes.clicks_deleted(conn)
        for table in CUBE_TABLES:
            conn.execute(delete(table))
    world = _world(engine)
    keep_daily_cubes_in(engine, zone)
    mark = START_DAY + sealed[0]
    with engine.begin() as conn:
        cube_spans.move_marks(conn, mark)
    offers = (world.upsell_offer_id, world.plain_offer_id)
    rows = []
    for number, (offer, country, agent, ip, cost, zone, minutes) in enumerate(clicks):
        row = {
            "subid": f"c{number}",
            "created_at": START + timedelta(minutes=minutes),
            "campaign_id": world.campaign_id,
            "offer_id": offers[offer],
            "country": country,
            "user_agent": AGENTS[agent],
            "ip": ip,
            "referrer": "https://www.news.example/a",
        }
        if cost is not None:
            row["cost"] = Decimal(cost)
        if zone is not None:
            row["sub_id_1"] = zone
        rows.append(row)
    # SQLite: folded after each batch, or never (then the postbacks that change a click, and
    # the read below, catch up).
    store_clicks(engine, rows, follow=fold_each_batch)
    for end in range(mark + 1, mark + 1 + sealed[1]):
        for cube in cube_spans.SPANNED:
            assert report_cubes.seal_day(engine, cube, end)
    pending: list[str] = []
    for which, tid, status, payout, cost, zone, minutes, batched in postbacks:
        moment = START + timedelta(minutes=minutes)
        query = f"subid=c{which % len(clicks)}&status={status}&tid={tid}&payout={payout}"
        query += f"&cost={cost}&date={int(moment.timestamp())}"
        if zone:
            query += f"&sub_id_1={zone}"
        pending.append(query)
        if not batched:
            _send(engine, pending)
            pending = []
    _send(engine, pending)
    report_cubes.seal(engine)
    kept = cube_rows(engine)
    # Over the hours that hold clicks and conversions (an hour more either side): the hours
    # around them hold nothing to recompute.
    report_cubes.rebuild(
        engine, since=START - timedelta(hours=2), until=START + timedelta(hours=73)
    )
    assert cube_rows(engine) == kept


def test_a_click_batch_leaves_its_facts_to_the_follower(engine: Engine) -> None:
    """A click batch upserts no cube row itself (SQLite's clicks wait past the watermark,
    PostgreSQL's in `cube_moves`, alike clicks summed into one row): the cubes hold the clicks,
    with their unique ones and costs, once a follower or a report has folded them."""
    world = _world(engine)
    clicks = [
        {"subid": f"c{n}", "created_at": START + timedelta(minutes=n)}
        | {"campaign_id": world.campaign_id, "country": "DE", "cost": Decimal("0.25")}
        | {"user_agent": AGENTS[0], "ip": f"10.0.0.{n % 2}"}
        for n in range(4)
    ]
    store_clicks(engine, clicks)
    totals = t.report_cubes["totals"].c
    summed = select(func.sum(totals.n), func.sum(totals.u), func.sum(totals.m))
    with engine.connect() as conn:
        assert conn.execute(summed).one() == (None, None, None)
        moves = conn.execute(select(func.count()).select_from(t.cube_moves)).scalar()
    # Two batches (three clicks, then one), each a row for the cubes and one per marked field.
    assert moves == (0 if engine.dialect.name == "sqlite" else 2 * 3)
    report_cubes.settle(engine)
    with engine.connect() as conn:
        assert conn.execute(summed).one() == (4, 2, Decimal("1"))
        assert conn.execute(select(func.count()).select_from(t.cube_moves)).scalar() == 0


def test_conversion_moves_count_once_whenever_they_reach_the_cubes(engine: Engine) -> None:
    """A postback's conversion moves wait in cube_moves, out of the cubes, until the follower
    or a report adds them; a rebuild while they wait adds them first, so none counts twice."""
    world = _world(engine)
    clicks = [
        {
            "subid": f"c{n}",
            "created_at": START + timedelta(minutes=n),
            "campaign_id": world.campaign_id,
            "offer_id": world.plain_offer_id,
            "country": "DE",
            "user_agent": AGENTS[n],
            "ip": "10.0.0.1",
            "sub_id_1": "z1",
        }
        for n in range(2)
    ]
    store_clicks(engine, clicks, follow=True)
    _send(engine, ["subid=c0&status=lead&payout=3", "subid=c1&status=sale&payout=7.5"])
    with engine.connect() as conn:
        # Each a row for the cubes and one for the marked sub_id_1 and keyword, by click and
        # by conversion time.
        assert conn.execute(select(func.count()).select_from(t.cube_moves)).scalar() == 12
        campaigns = t.report_cubes["campaigns"].c
        converted = select(func.count()).where(campaigns.ct_lead_n + campaigns.ct_sale_n != 0)
        assert conn.execute(converted).scalar() == 0
    report_cubes.rebuild(engine, since=START - timedelta(days=1), until=START + timedelta(days=5))
    kept = cube_rows(engine)
    report_cubes.rebuild(engine, since=START - timedelta(days=1), until=START + timedelta(days=5))
    assert cube_rows(engine) == kept
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.cube_moves)).scalar() == 0
        sale = select(func.sum(campaigns.ct_sale_m))
        assert conn.execute(sale).scalar() == Decimal("7.5")


def test_folds_and_rebuilds_give_way_to_a_writer_holding_a_cube_row(engine: Engine) -> None:
    """PostgreSQL: a fold waits 200 ms at most for a cube row a live writer holds, then leaves
    its moves for the next fold; a rebuild step gives way the same and runs again once the
    writer committed. The writer is never the one aborted."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite writes one transaction at a time")
    world = _world(engine)
    click = {
        "subid": "c0",
        "created_at": START,
        "campaign_id": world.campaign_id,
        "offer_id": world.plain_offer_id,
        "user_agent": AGENTS[0],
        "ip": "10.0.0.1",
    }
    store_clicks(engine, [click])
    _send(engine, ["subid=c0&status=lead&payout=3&tid=a", "subid=c0&status=lead&payout=4&tid=b"])
    campaigns = t.report_cubes["campaigns"]
    moves = t.cube_moves.c
    with engine.connect() as conn:
        key = conn.execute(
            select(moves.hour, moves.campaign_id, moves.traffic_source_id, moves.offer_id)
            .where(moves.dimension.is_(None), moves.fact == "ct:lead")
            .limit(1)
        ).one()
    with engine.connect() as writer:
        with writer.begin():  # a writer adding the same cube row, not committed yet
            row = dict(
                zip(("hour", "campaign_id", "traffic_source_id", "offer_id"), key, strict=True)
            )
            writer.execute(insert(campaigns).values(**row, kind="", ct_lead_n=1))
            assert asyncio.run(report_cubes.follow_moves(engine, _no_writer)) is False
            with engine.connect() as conn:
                assert conn.execute(select(func.count()).select_from(t.cube_moves)).scalar()
            rebuilding = threading.Thread(
                target=report_cubes.rebuild, args=(engine,), kwargs={"since": START}
            )
            rebuilding.start()
            time.sleep(0.5)  # the rebuild gives way at least once meanwhile
            assert rebuilding.is_alive()
        rebuilding.join(30)
    assert not rebuilding.is_alive()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.cube_moves)).scalar() == 0
        leads = select(func.sum(campaigns.c.ct_lead_n))
        assert conn.execute(leads).scalar() == 2  # the writer's row was replaced by the rebuild


def test_a_seal_waits_for_the_writers_that_read_the_mark_before_it(engine: Engine) -> None:
    """PostgreSQL: a writer that read the seal mark adds a fact of the first day past it to
    the one-day spans alone; a seal of that day waits until the writer commits, so the longer
    spans it sums from the one-day rows hold the fact."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite writes one transaction at a time")
    world = _world(engine)
    keep_daily_cubes_in(engine, "UTC")
    end = START_DAY // 16 * 16  # every span length ends here
    with engine.begin() as conn:
        cube_spans.move_marks(conn, end - 1)
    click = {
        "created_at": datetime.fromtimestamp((end - 1) * 86400 + 3600, UTC),
        "campaign_id": world.campaign_id,
        "traffic_source_id": 0,
        "offer_id": world.plain_offer_id,
        "country": "DE",
        "is_unique": True,
    }
    facts: rf.Facts = {}
    rf.unit_facts(click, (), (), facts, zone=UTC)
    countries = t.report_daily_cubes["daily_campaign_countries"].c

    def seal() -> None:
        assert report_cubes.seal_day(engine, "daily_campaign_countries", end)

    with engine.connect() as writer:
        with writer.begin():
            report_cubes.apply(writer, facts)
            sealing = threading.Thread(target=seal)
            sealing.start()
            time.sleep(0.5)
            assert sealing.is_alive()  # waiting for the writer's hold on the mark
        sealing.join(10)
    assert not sealing.is_alive()
    with engine.connect() as conn:
        held = select(countries.days, countries.n).where(countries.n != 0)
        assert sorted(conn.execute(held).all()) == [(days, 1) for days in rf.SPAN_DAYS]


def test_a_postback_batch_that_changes_no_click_waits_for_no_seal(engine: Engine) -> None:
    """PostgreSQL: a postback batch that changes no click's fields or cost leaves its facts in
    `cube_moves` and reads no seal mark, so it does not wait for a seal's transaction (which
    holds a cube's writers' mark)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite writes one transaction at a time")
    world = _world(engine)
    clicks = [
        {"subid": f"c{n}", "created_at": START, "campaign_id": world.campaign_id}
        | {"offer_id": world.plain_offer_id, "user_agent": AGENTS[0], "ip": "10.0.0.1"}
        for n in range(2)
    ]
    store_clicks(engine, clicks, follow=True)
    with engine.connect() as sealer, sealer.begin():
        sealer.exec_driver_sql("SELECT 1 FROM cube_watermarks WHERE name LIKE 'kept:%%' FOR UPDATE")
        postbacks = ["subid=c0&status=lead&payout=3&tid=a", "subid=c1&status=sale&payout=4&tid=b"]
        _send(engine, postbacks, lock_timeout="100ms")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.cube_moves)).scalar()


class _Stopped(Exception):
    pass


def test_a_seal_sums_a_chunk_of_keys_per_transaction(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A seal replaces a cube's spans SEAL_CHUNK keys per transaction, so a writer waits for one
    chunk at most (a whole cube's day held SQLite's write lock 2.4 s at 10M clicks with
    sub_id_1 marked). Clicks and postbacks stored between the chunks count once in every span;
    reports read the one-day spans until the last chunk moves the readers' mark; a seal stopped
    half-way is done again by the next. Then the cubes equal a rebuild."""
    end = START_DAY // 16 * 16 + 16  # every span length ends here
    monkeypatch.setattr(cube_spans, "SEAL_CHUNK", 2)
    monkeypatch.setattr(report_cubes, "_today", lambda zone: end)
    world = _world(engine)
    keep_daily_cubes_in(engine, "UTC")
    with engine.begin() as conn:
        cube_spans.move_marks(conn, end - 1)
    countries = ("DE", "US", "FR", "GB", "IT")
    clicks = [
        {
            "subid": f"c{n}",
            "created_at": START + timedelta(hours=7 * n),
            "campaign_id": world.campaign_id,
            "offer_id": world.plain_offer_id,
            "country": countries[n % 5],
            "user_agent": AGENTS[n % 2],
            "ip": f"10.0.0.{n}",
            "sub_id_1": f"z{n % 3}",
        }
        for n in range(12)
    ]
    store_clicks(engine, clicks[:6], follow=True)
    epoch = date(1970, 1, 1)
    days = {
        "from": str(epoch + timedelta(days=end - 16)),
        "to": str(epoch + timedelta(days=end - 1)),
    }
    query = parse_query(
        {"grouping": ["sub_id_1"], "metrics": ["clicks", "conversions", "revenue"], "range": days},
        now=START + timedelta(days=12),
        default_timezone="UTC",
        conversion_types=known_types([]),
    )
    tracker = entities.get_settings(engine)
    steps: list[Any] = []  # what each of the seal's transactions returned
    between: list[int] = []  # the writes between them
    cube = rf.MARKED_SPANS

    def run(step: cube_spans.Step, stop_at: int | None = None) -> Any:
        with engine.begin() as conn:
            done = step(conn)
        steps.append(done)
        if len(steps) == stop_at:
            raise _Stopped
        finished = len(steps) > 1 and done is True
        with engine.connect() as conn:  # until the last chunk, reports read the one-day spans
            assert cube_spans.sealed(conn, writing=False)[cube] == end - 1 + finished
        at = len(between)
        between.append(at)
        store_clicks(engine, clicks[6 + at : 7 + at], follow=True)
        _send(engine, [f"subid=c{at}&status=sale&payout={at + 1}&tid=t{at}"])
        report_cubes.settle(engine)
        spanned = run_report(engine, query, settings=tracker)
        assert spanned.source == f"aggregates:{cube}"
        raw = run_report(engine, query, settings=tracker, path="raw")
        assert spanned.as_dict() | {"source": "raw"} == raw.as_dict()
        return done

    with pytest.raises(_Stopped):  # stopped after the writers' mark and two chunks
        cube_spans.seal_day(lambda step: run(step, stop_at=3), cube, end)
    steps.clear()
    assert cube_spans.seal_day(run, cube, end)
    assert len(steps) >= 4 and steps[-1] is True  # the writers' mark, then 3 chunks or more
    assert report_cubes.seal(engine) == len(cube_spans.SPANNED) - 1  # the others' day
    kept = cube_rows(engine)
    report_cubes.rebuild(engine, since=START - timedelta(days=6), until=START + timedelta(days=11))
    assert cube_rows(engine) == kept


def test_one_process_seals_at_a_time(engine: Engine) -> None:
    """While another process seals (it holds the seal's turn: SQLite's lock file, PostgreSQL's
    advisory lock), a seal does nothing instead of replacing the same chunks again; then it
    seals every day that ended."""
    keep_daily_cubes_in(engine, "UTC")
    today = (datetime.now(UTC).date() - date(1970, 1, 1)).days
    with engine.begin() as conn:
        cube_spans.move_marks(conn, today - 2)
    with contextlib.ExitStack() as other:
        if engine.dialect.name == "sqlite":
            fd = os.open(f"{engine.url.database}-seal.lock", os.O_RDWR | os.O_CREAT)
            other.callback(os.close, fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            conn = other.enter_context(engine.connect())
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({report_cubes._SEAL_LOCK})")
            unlock = f"SELECT pg_advisory_unlock({report_cubes._SEAL_LOCK})"
            other.callback(conn.exec_driver_sql, unlock)
        assert report_cubes.seal(engine) == 0
        with engine.connect() as conn:
            assert set(cube_spans.sealed(conn, writing=False).values()) == {today - 2}
    assert report_cubes.seal(engine) == 2 * len(cube_spans.SPANNED)
    with engine.connect() as conn:
        assert set(cube_spans.sealed(conn, writing=False).values()) == {today}
        assert set(cube_spans.sealed(conn).values()) == {today}


async def _no_writer(work: Any) -> Any:
    raise AssertionError("PostgreSQL folds in a transaction of their own")


def keep_daily_cubes_in(engine: Engine, zone: str) -> None:
    """The report zone and the daily cubes' zone set to `zone`, as a rebuild there leaves them."""
    entities.update_settings(engine, {"timezone": zone})
    with engine.begin() as conn:
        value = {"timezone": zone, "ready": True}
        conn.execute(
            update(t.settings)
            .where(t.settings.c.key == report_cubes.DAILY_SETTING)
            .values(value=value)
        )
    report_cubes.forget_marked_dimensions()


def test_a_fresh_database_keeps_its_daily_cubes_in_utc(engine: Engine) -> None:
    with engine.connect() as conn:
        assert report_cubes.daily_zone(conn) == report_cubes.DailyZone("UTC", True)


@pytest.fixture(autouse=True, scope="module")
def _no_rezone_wait() -> Any:
    """One process writes here: nothing to wait for when the daily cubes change zone."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report_cubes, "REZONE_WAIT", 0)
        yield


def _world(engine: Engine) -> Any:
    with engine.connect() as conn:
        names = set(conn.execute(select(t.offers.c.name)).scalars())
    if not names:
        world = make_world(engine)
        entities.update_settings(engine, {"report_marked_dimensions": ["sub_id_1", "keyword"]})
        return world
    with engine.connect() as conn:
        offers = dict(conn.execute(select(t.offers.c.name, t.offers.c.id)).all())
        campaign = conn.execute(select(t.campaigns.c.id)).scalar()
    return type(
        "W",
        (),
        {
            "upsell_offer_id": offers["Upsell offer"],
            "plain_offer_id": offers["Plain offer"],
            "campaign_id": campaign,
        },
    )


def _send(engine: Engine, queries: list[str], *, lock_timeout: str | None = None) -> None:
    """One postback alone through the single path; several together through the batch path
    (PostgreSQL: waiting at most `lock_timeout` for a lock)."""
    if not queries:
        return
    now = START + timedelta(days=4)
    raws = [RawPostback(received_at=now, method="GET", query=q) for q in queries]
    with engine.begin() as conn:
        if lock_timeout is not None:
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{lock_timeout}'")
        rules = service.load_rules(conn)
        if len(raws) == 1:
            service.process_postback(conn, raws[0], rules, now=now)
            return
        batch = [
            PendingPostback(raw=r, rules=rules, parsed=service.parse_raw(r, rules)) for r in raws
        ]
        process_postbacks(conn, batch, now=now)


def test_the_follower_seals_the_days_that_ended_once_a_minute(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server process's follower seals every cube's spans up to today (the local day), then
    looks again only SEAL_INTERVAL later; nothing while the daily cubes wait for a rebuild."""
    monkeypatch.setattr(report_cubes, "_next_seal", {})
    keep_daily_cubes_in(engine, "UTC")
    today = (datetime.now(UTC).date() - date(1970, 1, 1)).days
    marks = t.cube_watermarks.c
    every_cube = marks.name.startswith("spans:") | marks.name.startswith("kept:")
    with engine.begin() as conn:
        cube_spans.move_marks(conn, today - 3)
    with engine.begin() as conn:  # a rebuild pending
        value = {"timezone": "UTC", "ready": False}
        setting = t.settings.c.key == report_cubes.DAILY_SETTING
        conn.execute(update(t.settings).where(setting).values(value=value))
    assert asyncio.run(report_cubes.follow_days(engine)) is False
    keep_daily_cubes_in(engine, "UTC")
    monkeypatch.setattr(report_cubes, "_next_seal", {})
    assert asyncio.run(report_cubes.follow_days(engine)) is True
    with engine.connect() as conn:
        positions = conn.execute(select(marks.position).where(every_cube)).scalars().all()
    assert sorted(set(positions)) == [today] and len(positions) == 2 * len(cube_spans.SPANNED)
    with engine.begin() as conn:
        cube_spans.move_marks(conn, today - 1)
    assert asyncio.run(report_cubes.follow_days(engine)) is False  # not a minute later
