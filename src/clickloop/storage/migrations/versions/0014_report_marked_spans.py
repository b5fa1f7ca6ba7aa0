"""the marked dimensions per span of local days, without campaign, source and offer: a zone
report reads a few spans instead of every hour

Revision ID: 0014_report_marked_spans
Revises: 0013_campaign_clicks_by_time
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_report_marked_spans"
down_revision = "0013_campaign_clicks_by_time"
branch_labels = None
depends_on = None

TABLE = "report_marked_spans"
SETTING = "report_daily_zone"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("dimension", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("fact", sa.String(length=80), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("u", sa.BigInteger(), nullable=False),
        sa.Column("m", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "days", "day", "dimension", "value", "fact", name=op.f(f"pk_{TABLE}")
        ),
    )
    # The spans are kept with the daily cubes: with marked facts already stored they are not
    # ready until `clickloop reports rebuild --daily` fills them (docs/reports.md).
    conn = op.get_bind()
    if conn.execute(sa.text("SELECT 1 FROM report_marked LIMIT 1")).first() is None:
        return
    settings = sa.table("settings", sa.column("key", sa.String()), sa.column("value", sa.JSON()))
    state = conn.execute(sa.select(settings.c.value).where(settings.c.key == SETTING)).scalar()
    zone = state.get("timezone") if isinstance(state, dict) else None
    conn.execute(settings.delete().where(settings.c.key == SETTING))
    value = {"timezone": zone if isinstance(zone, str) else "UTC", "ready": False}
    conn.execute(settings.insert().values(key=SETTING, value=value))


def downgrade() -> None:
    op.drop_table(TABLE)
