"""The DuckDB reference for bench/reports: a copy of a clickloop database's clicks and
conversions in a DuckDB file (through CSV: this DuckDB build cannot fetch its SQLite and
PostgreSQL scanners offline), the candidate cube sizes, and the reports' GROUP BYs.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import psycopg
from sqlalchemy.engine import make_url

from clickloop.storage.sqlite_driver import sqlite3

# The columns the reports read; times as UTC text without an offset.
CLICK_EXPORT = (
    "subid, created_at, campaign_id, traffic_source_id, offer_id, cost, is_unique, country,"
    " device_type, os, browser, language, referrer_domain, keyword, creative_id, ad_campaign_id,"
    " source, sub_id_1, sub_id_2, sub_id_3, sub_id_4"
)
CONVERSION_EXPORT = (
    "subid, type, payout, cost, converted_at, campaign_id, offer_id, traffic_source_id"
)
CLICK_SCHEMA = {
    "subid": "VARCHAR", "created_at": "TIMESTAMP", "campaign_id": "INTEGER",
    "traffic_source_id": "INTEGER", "offer_id": "INTEGER", "cost": "BIGINT",
    "is_unique": "BOOLEAN", "country": "VARCHAR", "device_type": "VARCHAR", "os": "VARCHAR",
    "browser": "VARCHAR", "language": "VARCHAR", "referrer_domain": "VARCHAR",
    "keyword": "VARCHAR", "creative_id": "VARCHAR", "ad_campaign_id": "VARCHAR",
    "source": "VARCHAR", "sub_id_1": "VARCHAR", "sub_id_2": "VARCHAR", "sub_id_3": "VARCHAR",
    "sub_id_4": "VARCHAR",
}  # fmt: skip
CONVERSION_SCHEMA = {
    "subid": "VARCHAR", "type": "VARCHAR", "payout": "BIGINT", "cost": "BIGINT",
    "converted_at": "TIMESTAMP", "campaign_id": "INTEGER", "offer_id": "INTEGER",
    "traffic_source_id": "INTEGER",
}  # fmt: skip


def _rows(url: str, query: str) -> Iterator[list[tuple[Any, ...]]]:
    if url.startswith("sqlite"):
        db = sqlite3.connect(make_url(url).database or "")
        try:
            cursor = db.execute(query)
            while batch := cursor.fetchmany(100_000):
                yield batch
        finally:
            db.close()
        return
    plain = make_url(url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(plain) as db, db.cursor(name="export") as cursor:
        db.execute("SET TIME ZONE 'UTC'")
        cursor.execute(
            query.replace("created_at", "created_at::timestamp").replace(
                "converted_at", "converted_at::timestamp"
            )
        )
        while batch := cursor.fetchmany(100_000):
            yield batch


def export(url: str, target: Path) -> Path:
    """`target` (a DuckDB file) holding the clicks and conversions of the database at `url`;
    an existing file is reused (delete it after regenerating the data)."""
    if target.exists():
        return target
    partial = target.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    con = duckdb.connect(str(partial))
    try:
        for table, columns, schema in (
            ("clicks", CLICK_EXPORT, CLICK_SCHEMA),
            ("conversions", CONVERSION_EXPORT, CONVERSION_SCHEMA),
        ):
            path = target.with_suffix(f".{table}.csv")
            with path.open("w", newline="") as out:
                writer = csv.writer(out)
                for batch in _rows(url, f"SELECT {columns} FROM {table}"):
                    writer.writerows(batch)
            types = ", ".join(f"'{name}': '{kind}'" for name, kind in schema.items())
            con.execute(
                f"CREATE TABLE {table} AS SELECT * FROM read_csv('{path}', header = false,"
                f" columns = {{{types}}}, nullstr = '')"
            )
            path.unlink()
    finally:
        con.close()
    partial.rename(target)
    return target


# Candidate cubes: (name, extra dimensions, bucket). Those named as a cube are the cubes kept
# (domain/report_facts.py; of a spanned one, its one-day rows).
CANDIDATES: list[tuple[str, tuple[str, ...], str]] = [
    ("campaigns", (), "hour"),
    ("countries", ("country",), "hour"),
    ("devices", ("device_type", "os", "browser"), "hour"),
    ("languages", ("language",), "hour"),
    ("countries+devices", ("country", "device_type", "os", "browser"), "hour"),
    ("country_device_totals", ("country", "device_type"), "hour, totals"),
    ("campaign_country_devices", ("country", "device_type"), "hour, campaign"),
    ("countries+languages", ("country", "language"), "hour"),
    ("referrer_domain", ("referrer_domain",), "hour"),
    ("all low-cardinality (one wide cube)",
     ("country", "device_type", "os", "browser", "language", "referrer_domain"), "hour"),
    ("marked sub_id_1", ("sub_id_1",), "hour"),
    ("marked sub_id_1, daily", ("sub_id_1",), "day"),
    ("marked sub_id_2", ("sub_id_2",), "hour"),
    ("marked sub_id_3", ("sub_id_3",), "hour"),
    ("marked sub_id_4", ("sub_id_4",), "hour"),
    ("keyword", ("keyword",), "hour"),
    ("keyword, daily", ("keyword",), "day"),
    ("creative_id", ("creative_id",), "hour"),
    ("ad_campaign_id", ("ad_campaign_id",), "hour"),
    ("source (placement)", ("source",), "hour"),
    ("daily_campaigns", (), "day"),
    ("daily_countries", ("country",), "day"),
    ("daily_devices", ("device_type", "os", "browser"), "day"),
    ("daily_languages", ("language",), "day"),
    ("daily_country_totals", ("country",), "day, totals"),
    ("daily_device_totals", ("device_type", "os", "browser"), "day, totals"),
    ("daily_language_totals", ("language",), "day, totals"),
    ("daily_campaign_countries", ("country",), "day, campaign"),
    ("daily_campaign_country_devices", ("country", "device_type"), "day, campaign"),
]  # fmt: skip
BASE = ("campaign_id", "traffic_source_id", "offer_id")
# A bucket's entities after its comma: "hour" and "day" keep BASE.
BUCKET_ENTITIES: dict[str, tuple[str, ...]] = {"totals": (), "campaign": ("campaign_id",)}


def entities_of(bucket: str) -> tuple[str, ...]:
    """The entity columns a candidate with this bucket keeps ("day, totals": none)."""
    return BUCKET_ENTITIES.get(bucket.partition(", ")[2], BASE)


def _bucket(column: str, bucket: str) -> str:
    seconds = 3600 if bucket.startswith("hour") else 86400
    return f"(epoch({column})::BIGINT // {seconds})"


def cube_size(
    con: duckdb.DuckDBPyConnection, dims: tuple[str, ...], bucket: str
) -> tuple[int, int]:
    """(rows of the `clicks` fact, all rows with the ct:/vt: conversion facts) of a cube with
    `dims` at `bucket` granularity: distinct key combinations, as the cube would store them.
    A "totals" bucket drops the campaign, source and offer, a "campaign" one the source and
    offer."""
    base = entities_of(bucket)
    keys = ", ".join(f"c.{name}" for name in (*base, *dims))
    clicks = con.execute(
        f"SELECT count(*) FROM (SELECT DISTINCT {_bucket('c.created_at', bucket)}, {keys}"
        " FROM clicks c)"
    ).fetchone()
    facts = con.execute(
        f"SELECT count(*) FROM (SELECT DISTINCT {_bucket('c.created_at', bucket)}, {keys}, v.type"
        " FROM conversions v JOIN clicks c USING (subid))"
        f" UNION ALL SELECT count(*) FROM (SELECT DISTINCT {_bucket('v.converted_at', bucket)},"
        f" {keys}, v.type FROM conversions v JOIN clicks c USING (subid))"
    ).fetchall()
    assert clicks is not None
    return int(clicks[0]), int(clicks[0]) + sum(int(n) for (n,) in facts)


def counts(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    clicks = con.execute("SELECT count(*) FROM clicks").fetchone()
    conversions = con.execute("SELECT count(*) FROM conversions").fetchone()
    assert clicks is not None and conversions is not None
    return int(clicks[0]), int(conversions[0])


# --- the reports' GROUP BYs -------------------------------------------------------------------
# Money in micro-units, as clickloop stores it. Revenue: every type but lead, rejected, trash.
CARRIED = (
    "carried AS (SELECT subid, sum(cost) AS cost FROM conversions WHERE cost IS NOT NULL"
    " GROUP BY subid)"
)
REVENUE = "sum(CASE WHEN v.type NOT IN ('lead', 'rejected', 'trash') THEN v.payout END)"


def one_level(click_key: str, conversion_key: str = "") -> list[str]:
    """GET /reports' two statements: clicks and cost by `click_key` (on clicks `c`), and
    conversions by conversion time under `conversion_key` (on conversions `v`; none: the click's
    key, joining the click)."""
    join = "" if conversion_key else " JOIN clicks c USING (subid)"
    return [
        f"WITH {CARRIED} SELECT {click_key} AS k, count(*), sum(c.is_unique::INT),"
        " sum(coalesce(carried.cost, c.cost)) FROM clicks c LEFT JOIN carried USING (subid)"
        " WHERE c.created_at >= $since AND c.created_at < $until GROUP BY k",
        f"SELECT {conversion_key or click_key} AS k, v.type, count(*), sum(v.payout)"
        f" FROM conversions v{join}"
        " WHERE v.converted_at >= $since AND v.converted_at < $until GROUP BY k, v.type",
    ]


def grouped(keys: list[str], where: str = "TRUE", order: str = "", limit: int = 0) -> list[str]:
    """One builder-style statement: clicks, cost and conversions (by conversion time) under the
    click's `keys`, with a filter on the clicks, sorted and cut in SQL."""
    names = ", ".join(f"k{n}" for n in range(len(keys)))
    click_keys = ", ".join(f"{k} AS k{n}" for n, k in enumerate(keys))
    return [
        f"WITH {CARRIED},"
        f" k AS (SELECT {click_keys}, count(*) AS clicks, sum(coalesce(carried.cost, c.cost))"
        " AS cost FROM clicks c LEFT JOIN carried USING (subid)"
        f" WHERE c.created_at >= $since AND c.created_at < $until AND {where} GROUP BY ALL),"
        f" v AS (SELECT {click_keys}, {REVENUE} AS revenue, count(*) AS conversions"
        " FROM conversions v JOIN clicks c USING (subid)"
        f" WHERE v.converted_at >= $since AND v.converted_at < $until AND {where} GROUP BY ALL)"
        f" SELECT *, coalesce(revenue, 0) - coalesce(cost, 0) AS profit"
        f" FROM k FULL JOIN v USING ({names}) {order} {f'LIMIT {limit}' if limit else ''}"
    ]
