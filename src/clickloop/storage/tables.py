"""The schema, as SQLAlchemy Core tables. Alembic migrations must produce exactly this.

Money is stored as integer micro-units (`Money`): exact on SQLite and PostgreSQL alike, and
summable in SQL without ever passing through a float.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from clickloop.domain.report_facts import (
    BASE_DIMENSIONS,
    COUNTS,
    CUBES,
    DAILY_CUBES,
    DAYPARTED,
    MARKED,
    MARKED_SPANS,
    SIGNATURE_FIELDS,
    SPANNED,
    VALUES,
)

MICROS = Decimal(1_000_000)
SUB_ID_COUNT = 30


class Money(TypeDecorator[Decimal]):
    """A Decimal stored as a BIGINT count of millionths (6 decimal places, exact)."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return int((Decimal(value) * MICROS).to_integral_value())

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(int(value)).scaleb(-6)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps naive text, so attach UTC on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_datetime() -> UTCDateTime:
    return UTCDateTime()


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

settings = Table(
    "settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", JSON, nullable=False),
)

traffic_sources = Table(
    "traffic_sources",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("template", String(200)),
    # [{"name": "external_id", "param": "clickid", "macro": "{click_id}"}, ...]
    Column("parameters", JSON, nullable=False),
    Column("postback_url", Text),
    Column("postback_method", String(8), nullable=False, default="GET"),
    Column("postback_body", Text),
    Column("postback_headers", JSON),  # {"Access-Token": "{macro}…"}; NULL = none
    Column("postback_statuses", JSON, nullable=False),  # [] = every status
    Column("response_must_contain", Text),
    Column("postback_enabled", Boolean, nullable=False, default=True),
    Column("postback_disabled_reason", Text),
    Column("last_success_at", utc_datetime()),
    Column("failing_since", utc_datetime()),
    Column("created_at", utc_datetime(), nullable=False),
)

affiliate_networks = Table(
    "affiliate_networks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("template", String(200)),
    Column("offer_params", Text, nullable=False, default=""),
    Column("postback_params", Text, nullable=False, default=""),
    Column("status_trainings", JSON, nullable=False),  # {"sale": ["approved", ...], ...}
    Column("postback_allowed_ips", JSON, nullable=False),  # [] = any sender
    Column("notes", Text, nullable=False, default=""),
    Column("created_at", utc_datetime(), nullable=False),
)

offers = Table(
    "offers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("url", Text, nullable=False),
    Column("affiliate_network_id", Integer, ForeignKey("affiliate_networks.id")),
    Column("currency", String(3), nullable=False, default="USD"),
    Column("payout", Money, nullable=False, default=Decimal(0)),
    Column("upsell", Boolean, nullable=False, default=False),
    Column("created_at", utc_datetime(), nullable=False),
)

campaigns = Table(
    "campaigns",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("alias", String(64), nullable=False, unique=True),
    Column("traffic_source_id", Integer, ForeignKey("traffic_sources.id")),
    Column("cost_model", String(16), nullable=False, default="none"),  # none | cpc | cpc_param
    Column("cost_value", Money, nullable=False, default=Decimal(0)),
    Column("status", String(16), nullable=False, default="active"),  # active | paused
    Column("created_at", utc_datetime(), nullable=False),
    # Archived: hidden from the campaign list, its link answers 404; its data stays.
    Column("archived_at", utc_datetime()),
    # The base URL of its link, one of the tracking_domains setting; NULL: the default one.
    Column("tracking_domain", String(200)),
)

campaign_offers = Table(
    "campaign_offers",
    metadata,
    Column("campaign_id", Integer, ForeignKey("campaigns.id"), primary_key=True),
    Column("offer_id", Integer, ForeignKey("offers.id"), primary_key=True),
    Column("weight", Integer, nullable=False, default=100),
    Column("active", Boolean, nullable=False, default=True),
)

campaign_postbacks = Table(
    "campaign_postbacks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("campaign_id", Integer, ForeignKey("campaigns.id"), nullable=False, index=True),
    Column("url", Text, nullable=False),
    Column("method", String(8), nullable=False, default="GET"),
    Column("body", Text),
    Column("headers", JSON),  # {"Authorization": "Bearer …"}; NULL = none
    Column("statuses", JSON, nullable=False),  # [] = every status
    Column("response_must_contain", Text),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("disabled_reason", Text),
    Column("last_success_at", utc_datetime()),
    Column("failing_since", utc_datetime()),
    Column("created_at", utc_datetime(), nullable=False),
)

conversion_types = Table(
    "conversion_types",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("label", String(200), nullable=False),
    Column("created_at", utc_datetime(), nullable=False),
)

exchange_rates = Table(
    "exchange_rates",
    metadata,
    Column("currency", String(3), primary_key=True),
    Column("per_eur", String(40), nullable=False),  # Decimal as text: units of currency per 1 EUR
    Column("source", String(16), nullable=False),  # ecb | manual
    Column("as_of", String(10), nullable=False),  # the date the rate is for, YYYY-MM-DD
    Column("updated_at", utc_datetime(), nullable=False),
)

_sub_id_columns = [Column(f"sub_id_{n}", Text) for n in range(1, SUB_ID_COUNT + 1)]

clicks = Table(
    "clicks",
    metadata,
    Column("subid", String(24), primary_key=True),
    # In the key for PostgreSQL's partitions (below); SQLite's key is subid alone (migration 0001).
    Column("created_at", utc_datetime(), primary_key=True),
    Column("campaign_id", Integer, nullable=False),
    Column("offer_id", Integer),
    Column("traffic_source_id", Integer),
    Column("external_id", Text),
    Column("keyword", Text),
    Column("cost", Money),
    Column("creative_id", Text),
    Column("ad_campaign_id", Text),
    Column("source", Text),
    *_sub_id_columns,
    Column("extra", JSON),  # custom parameters by name, and unmapped query parameters
    Column("ip", String(45)),
    Column("user_agent", Text),
    Column("referrer", Text),
    Column("language", String(64)),
    Column("country", String(2)),
    Column("os", String(64)),
    Column("browser", String(64)),
    Column("device_type", String(16)),
    Column("referrer_domain", String(255)),  # host of the referrer, lower case, no "www."
    # the visitor's first click on this campaign in 24 hours (docs/reports.md, "Unique clicks")
    Column("is_unique", Boolean),
    Column("visitor", BigInteger),  # a 63-bit hash of IP and user agent
    # Rebuilds, prunes and a campaign's clicks list (by time: services/queries.py).
    Index("ix_clicks_campaign_id_created_at", "campaign_id", "created_at"),
    # PostgreSQL: one partition per UTC day (storage/partitions.py), and so a primary key of
    # (subid, created_at): a partitioned table's unique keys must hold its partition key. The
    # click id stays unique all the same: it holds 64 random bits.
    postgresql_partition_by="RANGE (created_at)",
)

conversions = Table(
    "conversions",
    metadata,
    Column("id", Integer, primary_key=True),
    # No foreign key to clicks: conversions outlive pruned clicks (migration 0005).
    Column("subid", String(24), nullable=False),
    Column("tid", String(200), nullable=False, default=""),
    Column("type", String(64), nullable=False),
    Column("original_status", Text, nullable=False),
    Column("payout", Money, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("original_payout", Money, nullable=False),
    Column("original_currency", String(3), nullable=False),
    Column("rate", String(40), nullable=False),
    Column("cost", Money),
    Column("campaign_id", Integer, nullable=False),
    Column("offer_id", Integer),
    Column("traffic_source_id", Integer),
    Column("params", JSON, nullable=False),
    Column("converted_at", utc_datetime(), nullable=False),
    Column("created_at", utc_datetime(), nullable=False),
    Column("updated_at", utc_datetime(), nullable=False),
    UniqueConstraint("subid", "tid"),
    Index("ix_conversions_campaign_id_converted_at", "campaign_id", "converted_at"),
    Index("ix_conversions_converted_at_id", "converted_at", "id"),  # the list, newest first
)

received_postbacks = Table(
    "received_postbacks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("received_at", utc_datetime(), nullable=False),
    Column("method", String(8), nullable=False),
    Column("remote_ip", String(45)),
    Column("query", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("content_type", String(200)),
    Column("headers", JSON, nullable=False),
    Column("subid", String(200)),
    Column("outcome", String(16), nullable=False),  # accepted | updated | duplicate | ignored
    Column("reason", Text, nullable=False, default=""),
    Column("conversion_id", Integer, ForeignKey("conversions.id")),
    Column("reprocessed_by", Integer),  # id of the log row that re-ran this one
    Index("ix_received_postbacks_outcome_id", "outcome", "id"),
    Index("ix_received_postbacks_subid", "subid"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("conversion_id", Integer, ForeignKey("conversions.id"), nullable=False, index=True),
    Column("target_kind", String(24), nullable=False),  # traffic_source | campaign_postback
    Column("target_id", Integer, nullable=False),
    Column("method", String(8), nullable=False),
    Column("url", Text, nullable=False),
    Column("host", String(300), nullable=False),  # host:port of url, for per-host claim limits
    Column("body", Text),
    Column("content_type", String(100)),
    Column("headers", JSON),  # rendered at queueing like the URL, so retries send the same
    Column("response_must_contain", Text),
    Column("dedup_key", String(64), nullable=False, unique=True),
    Column("warnings", JSON, nullable=False),
    # queued | delivered | failed (gave up) | disabled (target off)
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", utc_datetime(), nullable=False),
    Column("claimed_until", utc_datetime()),
    Column("claimed_by", String(64)),
    Column("last_error", Text),
    Column("created_at", utc_datetime(), nullable=False),
    Column("delivered_at", utc_datetime()),
    Index("ix_deliveries_state_attempts_next_attempt_at", "state", "attempts", "next_attempt_at"),
    Index("ix_deliveries_state_id", "state", "id"),  # the deliveries list of a state
    # a target's latest deliveries and failures (its health on the campaign page)
    Index("ix_deliveries_target_kind_target_id_id", "target_kind", "target_id", "id"),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("delivery_id", Integer, ForeignKey("deliveries.id"), nullable=False, index=True),
    Column("started_at", utc_datetime(), nullable=False),
    Column("url", Text, nullable=False),  # secrets masked
    Column("status_code", Integer),
    Column("latency_ms", Integer, nullable=False),
    Column("response", Text),  # first 4 KiB
    # dns | connect | tls | timeout | http_status | body_check | ssrf
    Column("error_kind", String(16)),
    Column("error", Text),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(100), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at", utc_datetime(), nullable=False),
    Column("role", String(16), nullable=False, server_default="admin"),  # admin | analyst
    Column("disabled_at", utc_datetime()),  # set: the user cannot log in
)

# A logged-in admin browser: its cookie holds the random session id, the table its SHA-256.
admin_sessions = Table(
    "admin_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column(
        "user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("created_at", utc_datetime(), nullable=False),
    Column("expires_at", utc_datetime(), nullable=False, index=True),
)

# Login attempts per client address in the current window, shared by every server process.
login_attempts = Table(
    "login_attempts",
    metadata,
    Column("address", String(64), primary_key=True),
    Column("window_start", utc_datetime(), nullable=False, index=True),
    Column("attempts", Integer, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", utc_datetime(), nullable=False),
    Column("last_used_at", utc_datetime()),
    Column("role", String(16), nullable=False, server_default="admin"),  # admin | analyst
)

# Each visitor's last click on each campaign (docs/reports.md, "Unique clicks"): the click writer
# reads and moves it forward; `serve` drops the rows older than the unique window every hour. A
# row per visitor and campaign instead of an index entry per click: an index over every click
# cost the writer a page write per visitor of a batch.
click_visitors = Table(
    "click_visitors",
    metadata,
    Column("campaign_id", Integer, primary_key=True, autoincrement=False),
    Column("visitor", BigInteger, primary_key=True, autoincrement=False),
    Column("last_us", BigInteger, nullable=False),  # the last click, µs since the epoch
    Column("before_us", BigInteger),  # the click before it (the upsert returns it)
    sqlite_with_rowid=False,
)

# How far the report cubes have followed a raw table (storage/report_cubes.py): on SQLite,
# the row `clicks` holds the last clicks rowid whose facts are in the cubes; `kept:<cube>` and
# `spans:<cube>` the days by which the writers keep and the reports read a cube's longer spans
# (storage/cube_spans.py).
cube_watermarks = Table(
    "cube_watermarks",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
)

# One row (id 1): when `serve` next fetches the ECB rates, and how the last attempts went. The
# row is the coordinator: a process fetches only after moving `next_attempt_at` forward itself.
rate_updates = Table(
    "rate_updates",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("next_attempt_at", utc_datetime(), nullable=False),
    Column("attempted_at", utc_datetime()),
    Column("succeeded_at", utc_datetime()),
    Column("rates_as_of", String(10)),  # the date of the rates the last success stored
    Column("failed_at", utc_datetime()),
    Column("failure", Text),
)

# --- report aggregates -----------------------------------------------------------------------
# Each cube holds, per UTC hour and per combination of its dimensions, the facts of the clicks
# and conversions there (docs/reports.md, "Aggregates"); all but the `_totals` carry the campaign,
# the traffic source and the offer, so those filters work on them. NULL dimensions are kept
# as 0 (ids) or '' (text): primary-key columns cannot be NULL on PostgreSQL.
# A row holds its key's facts side by side (report_facts.VALUES): clicks (n = clicks, u = unique
# clicks, m = their cost) and, per built-in conversion type, `ct_<type>_n`/`_m` (conversions by
# click time: count and payout) and `vt_<type>_n`/`_m` (by conversion time); `kind` is '', or
# a custom type's name for that type's row (`ct_n`, `ct_m`, `vt_n`, `vt_m`).
REPORT_CUBES = CUBES
REPORT_BASE_DIMENSIONS = BASE_DIMENSIONS


def _cube_columns(entities: tuple[str, ...], dimensions: tuple[str, ...]) -> list[Column[Any]]:
    return [
        Column("hour", BigInteger, primary_key=True),  # epoch seconds // 3600
        *(Column(name, Integer, primary_key=True) for name in entities),
        *(Column(name, Text, primary_key=True) for name in dimensions),
        Column("kind", String(80), primary_key=True),
        *_value_columns(),
    ]


def _value_columns() -> list[Column[Any]]:
    return [
        Column(
            name, BigInteger if name in COUNTS else Money, nullable=False, server_default=text("0")
        )
        for name in VALUES
    ]


report_cubes: dict[str, Table] = {
    name: Table(f"report_{name}", metadata, *_cube_columns(entities, dimensions))
    for name, (entities, dimensions) in REPORT_CUBES.items()
}
# SQLite groups a month of source or offer by hour in these indexes' order instead of sorting
# (PostgreSQL hashes as fast without them: migration 0031).
_campaigns = report_cubes["campaigns"].c
Index(
    "ix_report_campaigns_hour_traffic_source_id", _campaigns.hour, _campaigns.traffic_source_id
).ddl_if(dialect="sqlite")
Index("ix_report_campaigns_hour_offer_id", _campaigns.hour, _campaigns.offer_id).ddl_if(
    dialect="sqlite"
)

# Dimensions a user marked for aggregation (the `report_marked_dimensions` setting, for example
# sub_id_1 for zones): one tall table, the dimension's name beside its value.
report_marked = Table(
    "report_marked",
    metadata,
    *_cube_columns(REPORT_BASE_DIMENSIONS, ("dimension", "value")),
)

# The same facts per local day (in the zone the `report_daily_zone` setting names) instead of the
# UTC hour; `day` is days since 1970-01-01 there. See domain/report_facts.py, DAILY_CUBES.
REPORT_DAILY_CUBES = DAILY_CUBES


def _daily_columns(
    entities: tuple[str, ...],
    dimensions: tuple[str, ...],
    *,
    spanned: bool = False,
    dayparted: bool = False,
) -> list[Column[Any]]:
    # A spanned cube's row holds `days` local days from `day` (domain/report_facts.py, SPANNED);
    # a dayparted one's, one local hour of each (0..23, DAYPARTED).
    return [
        *([Column("days", Integer, primary_key=True)] if spanned else []),
        Column("day", Integer, primary_key=True),
        *(Column(name, Integer, primary_key=True) for name in entities),
        *(Column(name, Text, primary_key=True) for name in dimensions),
        *([Column("hour_of_day", Integer, primary_key=True)] if dayparted else []),
        Column("kind", String(80), primary_key=True),
        *_value_columns(),
    ]


report_daily_cubes: dict[str, Table] = {
    name: Table(
        f"report_{name}",
        metadata,
        *_daily_columns(entities, dimensions, spanned=name in SPANNED, dayparted=name in DAYPARTED),
    )
    for name, (entities, dimensions) in REPORT_DAILY_CUBES.items()
}

# The marked dimensions per span of `days` local days from `day` (the daily cubes' zone) without
# the campaign, source and offer: domain/report_facts.py, MARKED_SPANS.
report_marked_spans = Table(
    "report_marked_spans", metadata, *_daily_columns((), ("dimension", "value"), spanned=True)
)

# The aggregate tables by UTC hour, those by local day, and all of them.
report_hourly_aggregates: list[Table] = [*report_cubes.values(), report_marked]
report_daily_aggregates: list[Table] = [*report_daily_cubes.values(), report_marked_spans]
report_aggregates: list[Table] = [*report_hourly_aggregates, *report_daily_aggregates]


def cube_table(name: str) -> Table:
    """The table of a cube named as domain/report_facts.py names them."""
    if name == MARKED:
        return report_marked
    if name == MARKED_SPANS:
        return report_marked_spans
    hourly = report_cubes.get(name)
    return hourly if hourly is not None else report_daily_cubes[name]


# What conversions moved (and, on PostgreSQL, new clicks added) and the cubes do not hold yet
# (report_facts.MOVE_COLUMNS). A postback adds its moves here, a row or two per changed
# conversion, and a click batch on PostgreSQL a row per alike clicks, instead of a row to every
# cube; the follower sums them into each cube with one statement per cube and deletes them
# (storage/report_cubes.py, fold_moves). Dimensions as in the cubes: ids 0 and texts '' for none.
cube_moves = Table(
    "cube_moves",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("hour", BigInteger, nullable=False),
    Column("day", Integer, nullable=False),
    *(Column(name, Integer, nullable=False) for name in BASE_DIMENSIONS),
    *(Column(name, Text, nullable=False) for name in SIGNATURE_FIELDS[len(BASE_DIMENSIONS) :]),
    Column("dimension", Text),  # a marked field's name, or NULL for the cubes' row
    Column("value", Text),
    Column("fact", String(80), nullable=False),
    Column("n", BigInteger, nullable=False),
    Column("m", BigInteger, nullable=False),  # millionths
    Column("u", BigInteger, nullable=False, server_default="0"),  # unique clicks (0024)
    Column("hour_of_day", Integer, nullable=False, server_default="0"),  # local (0025)
)

saved_reports = Table(
    "saved_reports",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("query", JSON, nullable=False),  # the body of POST /api/v1/reports/build
    Column("created_at", utc_datetime(), nullable=False),
    Column("updated_at", utc_datetime(), nullable=False),
)
