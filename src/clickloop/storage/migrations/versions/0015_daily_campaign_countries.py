"""a daily cube of campaign and country (without source and offer): campaign > country reads a
third of the rows of the daily countries cube

Revision ID: 0015_daily_campaign_countries
Revises: 0014_report_marked_spans
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_daily_campaign_countries"
down_revision = "0014_report_marked_spans"
branch_labels = None
depends_on = None

TABLE = "report_daily_campaign_countries"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("country", sa.Text(), nullable=False),
        sa.Column("fact", sa.String(length=80), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("u", sa.BigInteger(), nullable=False),
        sa.Column("m", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "campaign_id", "country", "fact", name=op.f(f"pk_{TABLE}")),
    )
    # The same days in the same zone as the daily countries cube, which holds these facts by
    # source and offer too: summed, they are this cube (ready or not, as that one is).
    op.execute(
        sa.text(
            f"INSERT INTO {TABLE} (day, campaign_id, country, fact, n, u, m) "
            "SELECT day, campaign_id, country, fact, sum(n), sum(u), sum(m) "
            "FROM report_daily_countries GROUP BY day, campaign_id, country, fact "
            "HAVING sum(n) != 0 OR sum(u) != 0 OR sum(m) != 0"
        )
    )


def downgrade() -> None:
    op.drop_table(TABLE)
