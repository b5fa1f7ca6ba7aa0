"""click_visitors: each visitor's last click on each campaign, for uniqueness, instead of an
index of campaign, visitor and time over every click

Revision ID: 0010_click_visitors
Revises: 0009_report_daily_cubes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_click_visitors"
down_revision = "0009_report_daily_cubes"
branch_labels = None
depends_on = None

VISITOR_INDEX = "ix_clicks_campaign_id_visitor_created_at"


def upgrade() -> None:
    op.create_table(
        "click_visitors",
        sa.Column("campaign_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("visitor", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "visitor", name=op.f("pk_click_visitors")),
        sqlite_with_rowid=False,
    )
    # The visitors of the last day of clicks, so that uniqueness carries on across the upgrade;
    # by campaign, so that the (campaign, time) index finds them.
    day_before = (
        "datetime(max(created_at), '-1 day')"
        if op.get_bind().dialect.name == "sqlite"
        else "max(created_at) - interval '1 day'"
    )
    op.execute(
        sa.text(
            "INSERT INTO click_visitors (campaign_id, visitor, last_at) "
            "SELECT campaign_id, visitor, max(created_at) FROM clicks "
            "WHERE campaign_id IN (SELECT id FROM campaigns) AND visitor IS NOT NULL "
            f"AND created_at >= (SELECT {day_before} FROM clicks) "
            "GROUP BY campaign_id, visitor"
        )
    )
    op.drop_index(VISITOR_INDEX, table_name="clicks")


def downgrade() -> None:
    op.create_index(VISITOR_INDEX, "clicks", ["campaign_id", "visitor", "created_at"])
    op.drop_table("click_visitors")
