"""the daily campaign-and-country cube per span of 1, 2, 4, 8 and 16 local days, as the marked
spans: campaign > country over a month reads ~5 spans instead of 30 days

Revision ID: 0016_campaign_country_spans
Revises: 0015_daily_campaign_countries
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_campaign_country_spans"
down_revision = "0015_daily_campaign_countries"
branch_labels = None
depends_on = None

TABLE = "report_daily_campaign_countries"
KEPT = f"{TABLE}_0015"  # the rows while the table is made again (a new primary key)
SPAN_DAYS = (1, 2, 4, 8, 16)  # domain/report_facts.py at this revision
FACTS = ["campaign_id", "country", "fact", "n", "u", "m"]


def _create(*, spanned: bool) -> None:
    keys = ["days", "day"] if spanned else ["day"]
    op.create_table(
        TABLE,
        *(sa.Column(name, sa.Integer(), nullable=False) for name in keys),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("country", sa.Text(), nullable=False),
        sa.Column("fact", sa.String(length=80), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("u", sa.BigInteger(), nullable=False),
        sa.Column("m", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(*keys, "campaign_id", "country", "fact", name=op.f(f"pk_{TABLE}")),
    )


def _set_aside(where: str) -> None:
    # CREATE TABLE … AS keeps no constraint, so the new table may take the primary key's name.
    op.execute(f"CREATE TABLE {KEPT} AS SELECT day, {', '.join(FACTS)} FROM {TABLE}{where}")
    op.drop_table(TABLE)


def upgrade() -> None:
    _set_aside("")
    _create(spanned=True)
    columns = ", ".join(FACTS)
    op.execute(f"INSERT INTO {TABLE} (days, day, {columns}) SELECT 1, day, {columns} FROM {KEPT}")
    op.drop_table(KEPT)
    # Every longer span is the sum of its days (a rebuild computes them the same way).
    for days in SPAN_DAYS[1:]:
        op.execute(
            f"INSERT INTO {TABLE} (days, day, {columns}) "
            f"SELECT {days}, day - day % {days}, campaign_id, country, fact, "
            f"sum(n), sum(u), sum(m) FROM {TABLE} WHERE days = 1 "
            f"GROUP BY day - day % {days}, campaign_id, country, fact "
            "HAVING sum(n) != 0 OR sum(u) != 0 OR sum(m) != 0"
        )


def downgrade() -> None:
    _set_aside(" WHERE days = 1")
    _create(spanned=False)
    columns = ", ".join(FACTS)
    op.execute(f"INSERT INTO {TABLE} (day, {columns}) SELECT day, {columns} FROM {KEPT}")
    op.drop_table(KEPT)
