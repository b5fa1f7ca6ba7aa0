"""clicks partitioned by day on PostgreSQL; conversions no longer reference clicks; the indexes
the lists of a campaign's clicks and conversions and of a state's deliveries page by

Revision ID: 0005_clicks_partitions
Revises: 0004_s2s_headers

On PostgreSQL `clicks` becomes a table partitioned by RANGE (created_at), one partition per UTC
day (`clicks_pYYYYMMDD`) and a DEFAULT one, so that old days are dropped whole (docs/deployment.md,
"Operations: retention and disk"). A partitioned table's primary key must hold the partition
key: it is (subid, created_at). The existing rows are copied day by day.

The foreign key conversions.subid -> clicks goes on both databases: PostgreSQL cannot reference
subid alone on a partitioned table, and conversions outlive their clicks once old clicks are
pruned (the conversion is the money record).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from alembic import op

revision = "0005_clicks_partitions"
down_revision = "0004_s2s_headers"
branch_labels = None
depends_on = None

DAYS_AHEAD = 7  # a snapshot of storage.partitions.DAYS_AHEAD (migrations never import live code)
FK = "fk_conversions_subid_clicks"
LIST_INDEX = "ix_clicks_campaign_id_subid"
VISITOR_INDEX = "ix_clicks_campaign_id_visitor_created_at"  # from 0003, made again
STATE_INDEX = "ix_deliveries_state_id"
OLD = "clicks_unpartitioned"


def _bounds(day: date) -> tuple[str, str]:
    return f"'{day} 00:00:00+00'", f"'{day + timedelta(days=1)} 00:00:00+00'"


def upgrade() -> None:
    op.create_index(STATE_INDEX, "deliveries", ["state", "id"])
    with op.batch_alter_table("conversions") as batch:
        batch.drop_constraint(FK, type_="foreignkey")
    if op.get_bind().dialect.name != "postgresql":
        op.create_index(LIST_INDEX, "clicks", ["campaign_id", "subid"])
        return
    execute = op.get_bind().exec_driver_sql
    execute(f"ALTER TABLE clicks RENAME TO {OLD}")
    execute(f"ALTER TABLE {OLD} RENAME CONSTRAINT pk_clicks TO pk_{OLD}")
    execute(f"ALTER INDEX ix_clicks_campaign_id_created_at RENAME TO ix_{OLD}_created")
    execute(f"ALTER INDEX ix_clicks_campaign_id_visitor_created_at RENAME TO ix_{OLD}_visitor")
    execute(f"CREATE TABLE clicks (LIKE {OLD} INCLUDING DEFAULTS) PARTITION BY RANGE (created_at)")
    execute("ALTER TABLE clicks ADD CONSTRAINT pk_clicks PRIMARY KEY (subid, created_at)")
    execute("CREATE INDEX ix_clicks_campaign_id_created_at ON clicks (campaign_id, created_at)")
    execute(f"CREATE INDEX {LIST_INDEX} ON clicks (campaign_id, subid)")
    execute(f"CREATE INDEX {VISITOR_INDEX} ON clicks (campaign_id, visitor, created_at)")
    execute("CREATE TABLE clicks_default PARTITION OF clicks DEFAULT")
    today = datetime.now(UTC).date()
    first, last = execute(f"SELECT min(created_at), max(created_at) FROM {OLD}").one()
    day = min(first.astimezone(UTC).date(), today) if first is not None else today
    end = max(last.astimezone(UTC).date(), today) if last is not None else today
    end += timedelta(days=DAYS_AHEAD)
    while day <= end:
        start, stop = _bounds(day)
        execute(
            f"CREATE TABLE clicks_p{day:%Y%m%d} PARTITION OF clicks "
            f"FOR VALUES FROM ({start}) TO ({stop})"
        )
        # One day per statement: each copy stays a bounded piece of work.
        if first is not None:
            execute(
                f"INSERT INTO clicks SELECT * FROM {OLD} "
                f"WHERE created_at >= {start} AND created_at < {stop}"
            )
        day += timedelta(days=1)
    execute(f"DROP TABLE {OLD}")
    execute("ANALYZE clicks")


def downgrade() -> None:
    """Back to one table (every partition's rows copied); the foreign key returns NOT VALID on
    PostgreSQL, as conversions of pruned clicks have no click."""
    op.drop_index(STATE_INDEX, "deliveries")
    if op.get_bind().dialect.name != "postgresql":
        op.drop_index(LIST_INDEX, "clicks")
        with op.batch_alter_table("conversions") as batch:
            batch.create_foreign_key(FK, "clicks", ["subid"], ["subid"])
        return
    execute = op.get_bind().exec_driver_sql
    execute(f"CREATE TABLE {OLD} (LIKE clicks INCLUDING DEFAULTS)")
    execute(f"INSERT INTO {OLD} SELECT * FROM clicks")
    execute("DROP TABLE clicks")  # with its partitions
    execute(f"ALTER TABLE {OLD} RENAME TO clicks")
    execute("ALTER TABLE clicks ADD CONSTRAINT pk_clicks PRIMARY KEY (subid)")
    execute("CREATE INDEX ix_clicks_campaign_id_created_at ON clicks (campaign_id, created_at)")
    execute(f"CREATE INDEX {VISITOR_INDEX} ON clicks (campaign_id, visitor, created_at)")
    op.create_foreign_key(
        FK, "conversions", "clicks", ["subid"], ["subid"], postgresql_not_valid=True
    )
