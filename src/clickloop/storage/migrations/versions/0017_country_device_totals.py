"""country by device type over all traffic, by UTC hour and by local day: geo-by-device reports
read a few rows a day instead of the clicks

Revision ID: 0017_country_device_totals
Revises: 0016_campaign_country_spans
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_country_device_totals"
down_revision = "0016_campaign_country_spans"
branch_labels = None
depends_on = None

HOURLY = "report_country_device_totals"
DAILY = "report_daily_country_device_totals"
SETTING = "report_daily_zone"


def _create(table: str, bucket: str, kind: sa.types.TypeEngine[int]) -> None:
    op.create_table(
        table,
        sa.Column(bucket, kind, nullable=False),
        sa.Column("country", sa.Text(), nullable=False),
        sa.Column("device_type", sa.Text(), nullable=False),
        sa.Column("fact", sa.String(length=80), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("u", sa.BigInteger(), nullable=False),
        sa.Column("m", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(bucket, "country", "device_type", "fact", name=op.f(f"pk_{table}")),
    )


def upgrade() -> None:
    _create(HOURLY, "hour", sa.BigInteger())
    _create(DAILY, "day", sa.Integer())
    # No cube holds country with device type: with clicks stored, both stay unread until
    # `clickloop reports rebuild` fills them from the clicks (docs/reports.md).
    conn = op.get_bind()
    if conn.execute(sa.text("SELECT 1 FROM clicks LIMIT 1")).first() is None:
        return
    settings = sa.table("settings", sa.column("key", sa.String()), sa.column("value", sa.JSON()))
    state = conn.execute(sa.select(settings.c.value).where(settings.c.key == SETTING)).scalar()
    state = state if isinstance(state, dict) else {}
    zone = state.get("timezone")
    unfilled = state.get("unfilled")
    unfilled = unfilled if isinstance(unfilled, list) else []
    value = {
        "timezone": zone if isinstance(zone, str) else "UTC",
        "ready": False,
        "unfilled": [*unfilled, "country_device_totals"],
    }
    conn.execute(settings.delete().where(settings.c.key == SETTING))
    conn.execute(settings.insert().values(key=SETTING, value=value))


def downgrade() -> None:
    op.drop_table(DAILY)
    op.drop_table(HOURLY)
