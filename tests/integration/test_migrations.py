"""Migrations produce exactly the declared schema."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Table, insert, inspect, select
from sqlalchemy.engine import Connection, Engine

from clickloop.domain import report_facts as rf
from clickloop.errors import InvalidInput
from clickloop.services import entities
from clickloop.services.report_builder import ReportResult, run_report
from clickloop.services.report_query import ReportQuery, known_types, parse_query
from clickloop.storage import report_cubes
from clickloop.storage import tables as t
from clickloop.storage.click_visitors import micros_of
from clickloop.storage.cube_spans import SPANNED
from clickloop.storage.db import alembic_config, make_engine, upgrade
from clickloop.storage.tables import metadata
from tests.conftest import PG_ENV, PG_SKIP_REASON, _pg_admin, _pg_url_for


def _partitions(conn: Connection) -> set[str]:
    """The partitions of partitioned tables (PostgreSQL): storage, not schema of their own."""
    if conn.dialect.name != "postgresql":
        return set()
    rows = conn.exec_driver_sql(
        "SELECT relname FROM pg_class WHERE relispartition AND relkind = 'r'"
    )
    return {name for (name,) in rows}


def _differences(conn: Connection) -> list[Any]:
    partitions = _partitions(conn)

    def include_name(name: str | None, kind: str, parents: Any) -> bool:
        return not (kind == "table" and name in partitions)

    def include_object(item: Any, name: str | None, kind: str, reflected: bool, to: Any) -> bool:
        # An index made for one database only (tables.py: `ddl_if`) is not the others'.
        made_for = getattr(getattr(item, "_ddl_if", None), "dialect", None)
        return made_for in (None, conn.dialect.name)

    context = MigrationContext.configure(
        conn,
        opts={
            "compare_type": True,
            "include_name": include_name,
            "include_object": include_object,
        },
    )
    return list(compare_metadata(context, metadata))


def _campaign(engine: Engine, now: datetime) -> int:
    """A campaign with one offer, as the upgrade tests' clicks need."""
    offer = entities.create_offer(engine, name="Offer", url="https://offer.test/", now=now)
    return entities.create_campaign(engine, name="C", alias="c", now=now, offers=[(offer, 1)])


def _daily_zone_setting(engine: Engine) -> Any:
    """The stored `report_daily_zone` setting (the daily cubes' zone and readiness)."""
    with engine.connect() as conn:
        return conn.execute(
            select(t.settings.c.value).where(t.settings.c.key == "report_daily_zone")
        ).scalar()


def _last_week(body: dict[str, Any], now: datetime) -> ReportQuery:
    """The report `body` asks for over the last 7 days up to `now`, in UTC."""
    return parse_query(
        body | {"range": {"preset": "last_7_days"}},
        now=now,
        default_timezone="UTC",
        conversion_types=known_types([]),
    )


def test_migrated_database_matches_tables(engine: Engine) -> None:
    """Upgrading an empty database yields the tables of tables.py, no more, no less."""
    with engine.connect() as conn:
        assert _differences(conn) == []
        partitions = _partitions(conn)
    names = set(inspect(engine).get_table_names()) - {"alembic_version"} - partitions
    assert names == set(metadata.tables)


def test_primary_keys_match_tables(engine: Engine) -> None:
    """Every primary key is the declared one; SQLite's clicks keep the click id alone, which
    PostgreSQL's partitions cannot (their keys hold the partition key, created_at)."""
    inspector = inspect(engine)
    for table in metadata.tables.values():
        declared = [column.name for column in table.primary_key]
        if table.name == "clicks" and engine.dialect.name == "sqlite":
            declared = ["subid"]
        assert inspector.get_pk_constraint(table.name)["constrained_columns"] == declared


def test_clicks_partitioned_by_day_on_postgresql(engine: Engine) -> None:
    """On PostgreSQL clicks is partitioned by range of created_at as tables.py declares, with a
    default partition and every day from today on for a week."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite keeps one clicks table")
    with engine.connect() as conn:
        key = conn.exec_driver_sql("SELECT pg_get_partkeydef('clicks'::regclass)").scalar()
        partitions = _partitions(conn)
    declared = metadata.tables["clicks"].dialect_options["postgresql"]["partition_by"]
    assert key == declared == "RANGE (created_at)"
    assert "clicks_default" in partitions
    assert len([name for name in partitions if name.startswith("clicks_p")]) == 8


def test_upgrade_is_idempotent(engine: Engine) -> None:
    """Running the migrations again changes nothing."""
    upgrade(engine)
    with engine.connect() as conn:
        assert _differences(conn) == []


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a database no migration has touched."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'clickloop.db'}")
        yield engine
        engine.dispose()
        return
    server = os.environ.get(PG_ENV)
    if not server:
        pytest.skip(PG_SKIP_REASON)
    name = f"clickloop_m_{secrets.token_hex(6)}"
    with _pg_admin(server) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    engine = make_engine(_pg_url_for(server, name))
    yield engine
    engine.dispose()
    with _pg_admin(server) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_to_partitions_keeps_every_click(empty_engine: Engine) -> None:
    """Clicks and conversions stored before 0005 are all there after it; on PostgreSQL each
    click sits in its day's partition; a conversion no longer needs a click."""
    engine = empty_engine
    upgrade(engine, "0003_report_aggregates")
    now = datetime.now(UTC).replace(microsecond=0)
    clicks = [
        {"subid": f"c{n}", "created_at": now - timedelta(days=n, hours=n), "campaign_id": 1}
        for n in range(0, 40, 3)
    ]
    conversion = {
        "subid": "c3",
        "tid": "",
        "type": "lead",
        "original_status": "lead",
        "payout": Decimal(1),
        "currency": "USD",
        "original_payout": Decimal(1),
        "original_currency": "USD",
        "rate": "1",
        "campaign_id": 1,
        "params": {},
        "converted_at": now,
        "created_at": now,
        "updated_at": now,
    }
    with engine.begin() as conn:
        conn.execute(insert(t.clicks), clicks)
        conn.execute(insert(t.conversions), conversion)
    upgrade(engine)
    with engine.begin() as conn:
        stored = conn.execute(select(t.clicks.c.subid, t.clicks.c.created_at)).all()
        assert sorted(stored) == sorted((c["subid"], c["created_at"]) for c in clicks)
        assert conn.execute(select(t.conversions.c.subid)).scalars().all() == ["c3"]
        conn.execute(insert(t.conversions), {**conversion, "subid": "no-such-click"})
        if engine.dialect.name == "postgresql":
            for click in clicks:
                day = click["created_at"].astimezone(UTC)
                where = f"SELECT subid FROM clicks_p{day:%Y%m%d}"
                assert click["subid"] in conn.exec_driver_sql(where).scalars().all()
    with engine.connect() as conn:
        assert _differences(conn) == []


def test_daily_cubes_wait_for_a_rebuild_after_the_upgrade(empty_engine: Engine) -> None:
    """0009 keeps the daily cubes in the report zone of then, not ready when clicks are
    stored (they start empty: `clickloop reports rebuild --daily` fills them)."""
    engine = empty_engine
    upgrade(engine, "0008_campaign_work_screen")
    now = datetime.now(UTC).replace(microsecond=0)
    with engine.begin() as conn:
        conn.execute(insert(t.settings), {"key": "timezone", "value": "Europe/Berlin"})
        conn.execute(insert(t.clicks), {"subid": "c1", "created_at": now, "campaign_id": 1})
    upgrade(engine)
    value = _daily_zone_setting(engine)
    assert value == {
        "timezone": "Europe/Berlin",
        "ready": False,
        # 0017, 0019, 0020, 0023 (0026: with the language)
        "unfilled": [
            "country_device_totals",
            "campaign_country_devices",
            "totals",
            "audience_totals",
        ],
    }


def test_daily_cubes_of_a_new_database_are_ready_in_utc(engine: Engine) -> None:
    value = _daily_zone_setting(engine)
    assert value == {"timezone": "UTC", "ready": True}


def test_upgrade_carries_the_last_day_of_visitors_over(empty_engine: Engine) -> None:
    """0010 keeps each visitor's last click of the last day of clicks in `click_visitors`, so
    that a visitor who clicked just before the upgrade is not counted unique again after it;
    0012 carries them over."""
    engine = empty_engine
    upgrade(engine, "0009_report_daily_cubes")
    now = datetime.now(UTC).replace(microsecond=0)
    campaign = _campaign(engine, now)
    clicks = [
        ("a", 7, now - timedelta(hours=30)),
        ("b", 7, now - timedelta(hours=2)),
        ("c", 7, now - timedelta(hours=1, microseconds=250)),
        ("d", 8, now - timedelta(hours=30)),  # more than a day before the last click
        ("e", None, now),
    ]
    with engine.begin() as conn:
        conn.execute(
            insert(t.clicks),
            [
                {"subid": s, "created_at": at, "campaign_id": campaign, "visitor": visitor}
                for s, visitor, at in clicks
            ],
        )
    upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(select(t.click_visitors)).all()
    # 0012 keeps its time as µs since the epoch.
    last = micros_of(now - timedelta(hours=1, microseconds=250))
    assert [tuple(row) for row in rows] == [(campaign, 7, last, None)]


@pytest.mark.parametrize("marked", [True, False])
def test_upgrade_waits_for_a_rebuild_of_the_marked_spans(
    empty_engine: Engine, marked: bool
) -> None:
    """0014 adds the marked fields' spans empty: with marked facts already kept, the daily
    aggregates are not ready (reports read the hourly ones) until a rebuild fills them."""
    engine = empty_engine
    upgrade(engine, "0013_campaign_clicks_by_time")
    if marked:
        row = {"hour": 1, "campaign_id": 1, "traffic_source_id": 0, "offer_id": 0}
        row |= {"dimension": "sub_id_1", "value": "z", "fact": "clicks", "n": 1, "u": 0, "m": 0}
        with engine.begin() as conn:
            conn.execute(insert(sa.table("report_marked", *map(sa.column, row))).values(row))
    upgrade(engine)
    value = _daily_zone_setting(engine)
    assert value == {"timezone": "UTC", "ready": not marked}


def test_upgrade_sums_the_daily_campaign_countries_from_the_daily_countries(
    empty_engine: Engine,
) -> None:
    """0015 fills the new cube from the daily countries cube (same days, same zone), summed
    over sources and offers, so the daily cubes stay ready; 0016 spans its days."""
    engine = empty_engine
    upgrade(engine, "0014_report_marked_spans")
    rows = [
        {"day": 20005, "campaign_id": 1, "traffic_source_id": source, "offer_id": offer}
        | {"country": "DE", "fact": "clicks", "n": n, "u": 1, "m": 250_000}
        for source, offer, n in ((1, 2, 3), (4, 5, 2), (4, 6, 1))
    ]
    with engine.begin() as conn:
        # The table as it is at 0014, without the `days` of 0022 (`m` in millionths).
        conn.execute(insert(sa.table("report_daily_countries", *map(sa.column, rows[0]))), rows)
    upgrade(engine, "0028_writers_seal_marks")  # the cubes of one fact a row (0029)
    with engine.connect() as conn:
        found = conn.exec_driver_sql("SELECT * FROM report_daily_campaign_countries").all()
    spans = [(1, 20005), (2, 20004), (4, 20004), (8, 20000), (16, 20000)]
    assert sorted(tuple(row) for row in found) == [
        (days, day, 1, "DE", "clicks", 6, 3, 750_000) for days, day in spans
    ]


@pytest.mark.parametrize(
    ("before", "cube", "keys"),
    [
        (
            "0015_daily_campaign_countries",
            "report_daily_campaign_countries",
            ((1, "DE", "clicks"), (2, "", "vt:sale")),
        ),
        (
            "0021_daily_campaign_devices",
            "report_daily_countries",
            ((1, 2, 3, "DE", "clicks"), (2, 0, 0, "", "vt:sale")),
        ),
        (
            "0021_daily_campaign_devices",
            "report_daily_devices",
            ((1, 2, 3, "mobile", "Android", "Chrome", "clicks"), (2, 0, 0, "", "", "", "vt:sale")),
        ),
        (
            "0021_daily_campaign_devices",
            "report_daily_languages",
            ((1, 2, 3, "de", "clicks"), (2, 0, 0, "", "vt:sale")),
        ),
    ],
)
def test_upgrade_spans_a_daily_cube_and_downgrade_keeps_the_days(
    empty_engine: Engine, before: str, cube: str, keys: tuple[tuple[Any, ...], ...]
) -> None:
    """0016 (campaign and country) and 0022 (countries, devices and languages by campaign,
    source and offer) keep each day of a daily cube as its one-day span and add every longer
    span as the sum of its days (what a rebuild writes); the downgrade gives the days back."""
    engine = empty_engine
    upgrade(engine, before)
    days = [
        (day, *key, day % 7 + 1, day % 2, 250_000 * (day % 3))
        for day in range(20003, 20040)
        for key in keys
        if (day + key[0]) % 5
    ]
    sql = f"INSERT INTO {cube} VALUES ({', '.join('?' * len(days[0]))})"
    with engine.begin() as conn:
        conn.exec_driver_sql(sql if conn.dialect.name == "sqlite" else sql.replace("?", "%s"), days)
    upgrade(engine, "0028_writers_seal_marks")  # the cubes of one fact a row (0029)
    sums: dict[tuple[Any, ...], list[int]] = {}
    for day, *key, n, u, m in days:
        for length in rf.SPAN_DAYS:
            found = sums.setdefault((length, day - day % length, *key), [0, 0, 0])
            for i, value in enumerate((n, u, m)):
                found[i] += value
    with engine.connect() as conn:
        found = conn.exec_driver_sql(f"SELECT * FROM {cube}").all()
    assert sorted(tuple(row) for row in found) == sorted(
        (*key, *totals) for key, totals in sums.items()
    )
    command.downgrade(alembic_config(engine), before)
    with engine.connect() as conn:
        back = conn.exec_driver_sql(f"SELECT * FROM {cube}").all()
    assert sorted(tuple(row) for row in back) == sorted(days)


@pytest.mark.parametrize(
    ("before", "by_campaign", "cube", "second"),
    [
        ("0016_campaign_country_spans", False, "country_device_totals", "device_type"),
        ("0018_cube_moves", True, "campaign_country_devices", "device_type"),
        ("0022_daily_spans", False, "audience_totals", "os"),
        ("0025_dayparts", False, "audience_totals", "language"),
    ],
)
def test_country_by_device_waits_for_a_rebuild_after_the_upgrade(
    empty_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    before: str,
    by_campaign: bool,
    cube: str,
    second: str,
) -> None:
    """0017 adds country by device type empty, 0019 the same by campaign, 0023 country by OS
    and browser, 0026 with the language: on a database with clicks no report reads them (geo
    by device, OS or language, over all traffic or for one campaign, reads the clicks) until a
    rebuild, even `--daily`, fills them from the clicks."""
    monkeypatch.setattr(report_cubes, "REZONE_WAIT", 0)
    engine = empty_engine
    upgrade(engine, before)
    now = datetime.now(UTC).replace(microsecond=0)
    campaign = _campaign(engine, now)
    clicks = [
        {"subid": f"c{i}", "created_at": now - timedelta(hours=i), "campaign_id": campaign}
        | {"country": country, "device_type": device, "os": system, "is_unique": True}
        | {"language": language}
        for i, (country, device, system, language) in enumerate(
            [
                ("DE", "mobile", "Android", "de"),
                ("DE", "desktop", "Windows", "en"),
                ("US", "", "", "en"),
            ]
        )
    ]
    with engine.begin() as conn:
        conn.execute(insert(t.clicks), clicks)
    upgrade(engine)
    body: dict[str, Any] = {"grouping": ["country", second]}
    if by_campaign:
        body["filters"] = [{"name": "campaign", "operator": "equals", "value": str(campaign)}]
    query = _last_week(body, now)
    tracker = entities.get_settings(engine)
    raw = run_report(engine, query, settings=tracker, path="raw")
    assert len(raw.rows) == 3
    assert run_report(engine, query, settings=tracker).source == "raw"
    with pytest.raises(InvalidInput):
        run_report(engine, query, settings=tracker, path="hourly")
    report_cubes.rebuild(engine, hourly=False)
    for path, source in (("auto", f"daily_{cube}"), ("hourly", cube)):
        cubed = run_report(engine, query, settings=tracker, path=path)
        assert cubed.source == f"aggregates:{source}"
        assert cubed.as_dict() | {"source": "raw"} == raw.as_dict()


def test_hour_totals_wait_for_a_rebuild_after_the_upgrade(
    empty_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0020 adds all traffic by the hour empty: on a database with clicks hourly reports read
    the campaigns' hours until a rebuild fills it; the daily cubes stay ready (0021 then
    makes them wait for that rebuild too)."""
    monkeypatch.setattr(report_cubes, "REZONE_WAIT", 0)
    engine = empty_engine
    upgrade(engine, "0019_campaign_country_devices")
    now = datetime.now(UTC).replace(microsecond=0)
    campaign = _campaign(engine, now)
    with engine.begin() as conn:
        conn.execute(
            insert(t.clicks),
            [
                # Three days, three hours of the day.
                {"subid": f"c{i}", "created_at": now - timedelta(hours=25 * i)}
                | {"campaign_id": campaign}
                for i in range(3)
            ],
        )
    upgrade(engine, "0020_hour_totals")
    value = _daily_zone_setting(engine)
    assert value == {"timezone": "UTC", "ready": True, "unfilled": ["totals"]}
    upgrade(engine)
    tracker = entities.get_settings(engine)

    def report(grouping: str, path: str = "auto") -> ReportResult:
        return run_report(
            engine, _last_week({"grouping": [grouping]}, now), settings=tracker, path=path
        )

    assert report("hour").source == "aggregates:campaigns"
    report_cubes.rebuild(engine, hourly=False)
    for grouping, path in (("hour", "auto"), ("day", "hourly")):
        cubed = report(grouping, path)
        assert cubed.source == "aggregates:totals"
        assert len(cubed.rows) == 3
        assert cubed.as_dict() | {"source": "raw"} == report(grouping, "raw").as_dict()


def test_campaign_devices_wait_for_a_rebuild_after_the_upgrade(
    empty_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0021 adds device type per campaign empty: with clicks stored the daily cubes wait for a
    rebuild (reports read the hourly ones), which fills it."""
    monkeypatch.setattr(report_cubes, "REZONE_WAIT", 0)
    engine = empty_engine
    upgrade(engine, "0020_hour_totals")
    now = datetime.now(UTC).replace(microsecond=0)
    campaign = _campaign(engine, now)
    clicks = [
        {"subid": f"c{i}", "created_at": now - timedelta(hours=i), "campaign_id": campaign}
        | {"device_type": device}
        for i, device in enumerate(["mobile", "desktop", "mobile"])
    ]
    with engine.begin() as conn:
        conn.execute(insert(t.clicks), clicks)
    upgrade(engine)
    query = _last_week({"grouping": ["campaign", "device_type"]}, now)
    tracker = entities.get_settings(engine)
    assert run_report(engine, query, settings=tracker).source == "aggregates:devices"
    report_cubes.rebuild(engine)
    cubed = run_report(engine, query, settings=tracker)
    assert cubed.source == "aggregates:daily_campaign_devices"
    assert len(cubed.rows) == 2
    assert cubed.as_dict() | {"source": "raw"} == (
        run_report(engine, query, settings=tracker, path="raw").as_dict()
    )


def test_dayparts_wait_for_a_daily_rebuild_after_the_upgrade(
    empty_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0025 adds the daily cubes by local hour of day empty, and the hour of day to the moves:
    with clicks stored the daily cubes wait for `rebuild --daily` (hours of day read the hourly
    cubes meanwhile), which folds a move left without its hour of day before it sums the days
    from the hourly cubes."""
    monkeypatch.setattr(report_cubes, "REZONE_WAIT", 0)
    engine = empty_engine
    upgrade(engine)
    entities.update_settings(engine, {"timezone": "Europe/Berlin"})
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    campaign = _campaign(engine, now)
    clicks = [
        {"subid": f"c{i}", "created_at": now - timedelta(hours=5 * i), "campaign_id": campaign}
        for i in range(4)
    ]
    with engine.begin() as conn:
        conn.execute(insert(t.clicks), clicks)
    report_cubes.rebuild(engine)
    command.downgrade(alembic_config(engine), "0024_click_moves")
    # A sale of the second click by conversion time, as a postback of 0024 left it: a move
    # without the hour of day.
    sale = ("sale", Decimal(3), now)
    with engine.begin() as conn:
        conn.execute(
            insert(t.conversions),
            {"subid": "c1", "type": "sale", "original_status": "sale", "payout": Decimal(3)}
            | {"currency": "USD", "original_payout": Decimal(3), "original_currency": "USD"}
            | {"rate": "1", "campaign_id": campaign, "params": {}, "converted_at": now}
            | {"created_at": now, "updated_at": now},
        )
        click = clicks[1] | dict.fromkeys(rf.SIGNATURE_FIELDS[3:]) | {"traffic_source_id": None}
        click["offer_id"] = None
        for row in rf.conversion_moves([(click, None, sale)], ()):
            move = dict(zip(rf.MOVE_COLUMNS, row, strict=True))
            del move["hour_of_day"]
            conn.execute(insert(t.cube_moves).values(move))
    upgrade(engine)
    # (0026, passed on the way back, waits for the audience's hours too)
    value = {"timezone": "Europe/Berlin", "ready": False, "unfilled": ["audience_totals"]}
    assert _daily_zone_setting(engine) == value
    query = parse_query(
        {"range": {"preset": "last_7_days", "timezone": "Europe/Berlin"}}
        | {"grouping": ["hour_of_day", "campaign"], "attribution": "conversion_time"},
        now=now,
        default_timezone="UTC",
        conversion_types=known_types([]),
    )
    _read_until_a_daily_rebuild(engine, query, ("campaigns", "daypart_campaigns"), rows=4)


def _read_until_a_daily_rebuild(
    engine: Engine, query: ReportQuery, cubes: tuple[str, str], *, rows: int
) -> None:
    """`query` reads the first of `cubes` until `rebuild --daily`, then the second, with
    `rows` rows, as the raw tables say."""
    tracker = entities.get_settings(engine)
    assert run_report(engine, query, settings=tracker).source == f"aggregates:{cubes[0]}"
    report_cubes.rebuild(engine, hourly=False)
    cubed = run_report(engine, query, settings=tracker)
    assert cubed.source == f"aggregates:{cubes[1]}"
    assert len(cubed.rows) == rows
    assert cubed.as_dict() | {"source": "raw"} == (
        run_report(engine, query, settings=tracker, path="raw").as_dict()
    )


def test_daypart_countries_wait_for_a_daily_rebuild_after_the_upgrade(
    empty_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0032 adds the countries by local hour of day empty, its seal marks where those of country
    by device type are: with clicks stored the daily cubes wait for `rebuild --daily` (country by
    hour reads the hourly cube by country and device type meanwhile). Its downgrade drops both."""
    monkeypatch.setattr(report_cubes, "REZONE_WAIT", 0)
    engine = empty_engine
    upgrade(engine)
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    campaign = _campaign(engine, now)
    clicks = [
        {"subid": f"c{i}", "created_at": now - timedelta(hours=5 * i), "campaign_id": campaign}
        | {"country": "DE" if i % 2 else "US", "device_type": "mobile"}
        for i in range(4)
    ]
    with engine.begin() as conn:
        conn.execute(insert(t.clicks), clicks)
    report_cubes.rebuild(engine)
    marks = t.cube_watermarks

    def marks_of(cube: str) -> list[int | None]:
        with engine.connect() as conn:
            at = dict(conn.execute(select(marks.c.name, marks.c.position)).all())
        return [at.get(f"{kind}:{cube}") for kind in ("spans", "kept")]

    command.downgrade(alembic_config(engine), "0031_campaign_hour_indexes")
    assert marks_of("daypart_countries") == [None, None]
    assert "report_daypart_countries" not in inspect(engine).get_table_names()
    upgrade(engine)
    assert marks_of("daypart_countries") == marks_of("daypart_country_devices") != [None, None]
    assert _daily_zone_setting(engine) == {"timezone": "UTC", "ready": False}
    query = _last_week({"grouping": ["hour", "country"]}, now)
    cubes = ("country_device_totals", "daypart_countries")
    _read_until_a_daily_rebuild(engine, query, cubes, rows=4)


@pytest.mark.parametrize("before", ["0017_country_device_totals", "0023_country_os_browser_totals"])
def test_downgrade_waits_until_the_moves_are_in_the_cubes(engine: Engine, before: str) -> None:
    """0018's downgrade drops cube_moves, 0024's its unique clicks, only once it is empty: moves
    still waiting would never reach the cubes of the version before, or without their unique
    clicks (the server's follower or a rebuild adds them)."""
    texts = rf.SIGNATURE_FIELDS[len(rf.BASE_DIMENSIONS) :]
    move = dict.fromkeys(rf.MOVE_COLUMNS, 0) | dict.fromkeys(texts, "")
    move |= {"dimension": None, "value": None, "fact": "clicks", "n": 1, "u": 1}
    with engine.begin() as conn:
        conn.execute(insert(t.cube_moves).values(move))
    with pytest.raises(RuntimeError, match="moves are waiting"):
        command.downgrade(alembic_config(engine), before)
    with engine.begin() as conn:
        report_cubes.everything_in(conn)
    command.downgrade(alembic_config(engine), before)
    if before.startswith("0017"):
        assert "cube_moves" not in inspect(engine).get_table_names()
    else:
        assert "u" not in {c["name"] for c in inspect(engine).get_columns("cube_moves")}
    upgrade(engine)


def test_the_seal_mark_starts_today_and_downgrade_waits_for_a_rebuild(
    empty_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0027 marks every cube's spans sealed up to today (UTC; the writers had kept every span); its
    downgrade leaves the daily cubes unread, with clicks stored, until `rebuild --daily`: the
    version before would read the spans past the mark, which miss facts."""
    monkeypatch.setattr(report_cubes, "REZONE_WAIT", 0)
    engine = empty_engine
    upgrade(engine, "0026_audience_totals")
    upgrade(engine)
    marks = t.cube_watermarks.c
    spans = select(marks.name, marks.position).where(marks.name.startswith("spans:"))
    today = (datetime.now(UTC).date() - date(1970, 1, 1)).days
    with engine.connect() as conn:
        assert dict(conn.execute(spans).all()) == {f"spans:{cube}": today for cube in SPANNED}
    now = datetime.now(UTC).replace(microsecond=0)
    with engine.begin() as conn:
        conn.execute(insert(t.clicks), {"subid": "c1", "created_at": now, "campaign_id": 1})
    command.downgrade(alembic_config(engine), "0026_audience_totals")
    with engine.connect() as conn:
        assert not conn.execute(spans).all()
    assert _daily_zone_setting(engine) == {"timezone": "UTC", "ready": False}
    upgrade(engine)
    report_cubes.rebuild(engine, hourly=False)
    assert _daily_zone_setting(engine) == {"timezone": "UTC", "ready": True}


def test_the_writers_seal_marks_start_at_the_readers(empty_engine: Engine) -> None:
    """0028 gives each cube of spans a writers' mark (`kept:<cube>`) at its seal mark, which
    becomes the readers' (`spans:<cube>`); its downgrade drops them, the readers' marks kept."""
    engine = empty_engine
    upgrade(engine, "0027_sealed_spans")
    marks = t.cube_watermarks
    with engine.begin() as conn:
        conn.execute(
            marks.update().where(marks.c.name == "spans:marked_spans").values(position=20000)
        )
        before = dict(conn.execute(select(marks.c.name, marks.c.position)).all())
    upgrade(engine, "0028_writers_seal_marks")
    with engine.connect() as conn:
        after = dict(conn.execute(select(marks.c.name, marks.c.position)).all())
    kept = {f"kept:{name[6:]}": at for name, at in before.items() if name.startswith("spans:")}
    assert after == before | kept and after["kept:marked_spans"] == 20000
    command.downgrade(alembic_config(engine), "0027_sealed_spans")
    with engine.connect() as conn:
        assert dict(conn.execute(select(marks.c.name, marks.c.position)).all()) == before


def test_the_cubes_keep_a_keys_facts_side_by_side_and_downgrade_unfolds_them(
    empty_engine: Engine,
) -> None:
    """0029 turns the cubes' rows of one fact each into a row per key holding the clicks and
    each built-in type's facts by click and by conversion time side by side, and a row per
    custom type; its downgrade gives back the rows of one fact (but those of nothing)."""
    engine = empty_engine
    upgrade(engine, "0028_writers_seal_marks")
    tall = {
        "report_campaigns": [
            (7, 1, 2, 3, "clicks", 5, 2, 1_500_000),
            (7, 1, 2, 3, "ct:sale", 1, 0, 7_000_000),
            (7, 1, 2, 3, "vt:lead", 2, 0, 0),
            (7, 1, 2, 3, "ct:upsale", 1, 0, 2_000_000),
            (7, 1, 2, 3, "vt:upsale", 1, 0, 2_000_000),
            (8, 1, 2, 3, "ct:lead", 0, 0, 0),  # moved out since: nothing
            (8, 4, 0, 0, "clicks", 1, 1, 0),
        ],
        "report_marked_spans": [
            (2, 20004, "sub_id_1", "z", "clicks", 3, 3, 0),
            (2, 20004, "sub_id_1", "z", "vt:rebill", 1, 0, 4_000_000),
        ],
    }
    with engine.begin() as conn:
        for table, rows in tall.items():
            marks = ", ".join(["?" if conn.dialect.name == "sqlite" else "%s"] * len(rows[0]))
            conn.exec_driver_sql(f"INSERT INTO {table} VALUES ({marks})", rows)
    upgrade(engine)

    def held(table: Table) -> dict[tuple[Any, ...], dict[str, Any]]:
        with engine.connect() as conn:
            rows = conn.execute(select(table)).all()
        keys = [column.name for column in table.primary_key]
        return {
            tuple(row._mapping[key] for key in keys): {
                name: value for name, value in row._mapping.items() if name in rf.VALUES and value
            }
            for row in rows
        }

    assert held(t.report_cubes["campaigns"]) == {
        (7, 1, 2, 3, ""): {
            "n": 5,
            "u": 2,
            "m": Decimal("1.5"),
            "ct_sale_n": 1,
            "ct_sale_m": Decimal(7),
            "vt_lead_n": 2,
        },
        (7, 1, 2, 3, "upsale"): {"ct_n": 1, "ct_m": Decimal(2), "vt_n": 1, "vt_m": Decimal(2)},
        (8, 4, 0, 0, ""): {"n": 1, "u": 1},
    }
    assert held(t.report_marked_spans) == {
        (2, 20004, "sub_id_1", "z", ""): {"n": 3, "u": 3, "vt_rebill_n": 1, "vt_rebill_m": 4}
    }
    command.downgrade(alembic_config(engine), "0028_writers_seal_marks")
    with engine.connect() as conn:
        for table, rows in tall.items():
            back = conn.exec_driver_sql(f"SELECT * FROM {table}").all()
            assert sorted(map(tuple, back)) == sorted(row for row in rows if row[-3] or row[-1])


def test_postgresql_sums_bigints_as_bigints(empty_engine: Engine) -> None:
    """0030 adds `total8` on PostgreSQL, the reports' sum of bigints (a bigint, NULLs skipped,
    an overflow an error); its downgrade drops it."""
    engine = empty_engine
    if engine.dialect.name != "postgresql":
        pytest.skip("an aggregate of PostgreSQL's; SQLite's sum of integers is one")
    upgrade(engine)
    summed = (
        "SELECT total8(x), pg_typeof(total8(x))::text FROM (VALUES (1::bigint), (2), (NULL)) v(x)"
    )
    with engine.connect() as conn:
        assert tuple(conn.exec_driver_sql(summed).one()) == (3, "bigint")
        with pytest.raises(sa.exc.DataError):
            conn.exec_driver_sql("SELECT total8(x) FROM (VALUES (9223372036854775807), (1)) v(x)")
    command.downgrade(alembic_config(engine), "0029_wide_cube_rows")
    with engine.connect() as conn, pytest.raises(sa.exc.ProgrammingError):
        conn.exec_driver_sql(summed)
