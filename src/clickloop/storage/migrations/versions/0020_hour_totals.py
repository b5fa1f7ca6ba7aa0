"""all traffic by UTC hour: hour-of-day and hourly reports without campaign, source or offer
read a row per hour and fact instead of the campaigns' rows

Revision ID: 0020_hour_totals
Revises: 0019_campaign_country_devices
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_hour_totals"
down_revision = "0019_campaign_country_devices"
branch_labels = None
depends_on = None

TABLE = "report_totals"
SETTING = "report_daily_zone"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("fact", sa.String(length=80), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("u", sa.BigInteger(), nullable=False),
        sa.Column("m", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "fact", name=op.f(f"pk_{TABLE}")),
    )
    # With clicks stored it stays unread until `clickloop reports rebuild` fills it from them;
    # the daily cubes stay as they are (no daily cube is added).
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
        "ready": state.get("ready") is True,
        "unfilled": [*unfilled, "totals"],
    }
    conn.execute(settings.delete().where(settings.c.key == SETTING))
    conn.execute(settings.insert().values(key=SETTING, value=value))


def downgrade() -> None:
    op.drop_table(TABLE)
