"""daily report cubes (by local day in the report zone) beside the hourly ones

Revision ID: 0009_report_daily_cubes
Revises: 0008_campaign_work_screen
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_report_daily_cubes"
down_revision = "0008_campaign_work_screen"
branch_labels = None
depends_on = None

# A snapshot of tables.REPORT_DAILY_CUBES at this revision (migrations never import the live
# schema): name -> (entity columns, other dimensions).
BASE = ("campaign_id", "traffic_source_id", "offer_id")
CUBES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "daily_campaigns": (BASE, ()),
    "daily_countries": (BASE, ("country",)),
    "daily_devices": (BASE, ("device_type", "os", "browser")),
    "daily_languages": (BASE, ("language",)),
    "daily_country_totals": ((), ("country",)),
    "daily_device_totals": ((), ("device_type", "os", "browser")),
    "daily_language_totals": ((), ("language",)),
}
SETTING = "report_daily_zone"


def upgrade() -> None:
    for name, (entities, dimensions) in CUBES.items():
        table = f"report_{name}"
        op.create_table(
            table,
            sa.Column("day", sa.Integer(), nullable=False),
            *(sa.Column(column, sa.Integer(), nullable=False) for column in entities),
            *(sa.Column(column, sa.Text(), nullable=False) for column in dimensions),
            sa.Column("fact", sa.String(length=80), nullable=False),
            sa.Column("n", sa.BigInteger(), nullable=False),
            sa.Column("u", sa.BigInteger(), nullable=False),
            sa.Column("m", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint(
                "day", *entities, *dimensions, "fact", name=op.f(f"pk_{table}")
            ),
        )
    # The daily cubes are kept in the report zone of now; with clicks already stored they are
    # empty, so not used until `clickloop reports rebuild --daily` fills them (docs/reports.md).
    settings = sa.table("settings", sa.column("key", sa.String()), sa.column("value", sa.JSON()))
    conn = op.get_bind()
    zone = conn.execute(sa.select(settings.c.value).where(settings.c.key == "timezone")).scalar()
    stored = conn.execute(sa.text("SELECT 1 FROM clicks LIMIT 1")).first() is not None
    stored = (
        stored or conn.execute(sa.text("SELECT 1 FROM conversions LIMIT 1")).first() is not None
    )
    value = {"timezone": zone if isinstance(zone, str) else "UTC", "ready": not stored}
    op.bulk_insert(settings, [{"key": SETTING, "value": value}])


def downgrade() -> None:
    op.execute(sa.text(f"DELETE FROM settings WHERE key = '{SETTING}'"))
    for name in CUBES:
        op.drop_table(f"report_{name}")
