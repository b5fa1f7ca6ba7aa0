"""report aggregates (cubes), saved reports, and the click fields reports group by

Revision ID: 0003_report_aggregates
Revises: 0002_auth_sessions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_report_aggregates"
down_revision = "0002_auth_sessions"
branch_labels = None
depends_on = None

# A snapshot of tables.REPORT_CUBES at this revision (migrations never import the live schema).
CUBES: dict[str, tuple[str, ...]] = {
    "campaigns": (),
    "countries": ("country",),
    "devices": ("device_type", "os", "browser"),
    "languages": ("language",),
    "marked": ("dimension", "value"),
}
BASE = ("campaign_id", "traffic_source_id", "offer_id")


def _create_cube(name: str, dimensions: tuple[str, ...]) -> None:
    table = f"report_{name}"
    op.create_table(
        table,
        sa.Column("hour", sa.BigInteger(), nullable=False),
        *(sa.Column(column, sa.Integer(), nullable=False) for column in BASE),
        *(sa.Column(column, sa.Text(), nullable=False) for column in dimensions),
        sa.Column("fact", sa.String(length=80), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("u", sa.BigInteger(), nullable=False),
        sa.Column("m", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("hour", *BASE, *dimensions, "fact", name=op.f(f"pk_{table}")),
    )


def upgrade() -> None:
    with op.batch_alter_table("clicks") as batch:
        batch.add_column(sa.Column("referrer_domain", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("is_unique", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("visitor", sa.BigInteger(), nullable=True))
        batch.create_index(
            "ix_clicks_campaign_id_visitor_created_at", ["campaign_id", "visitor", "created_at"]
        )
    for name, dimensions in CUBES.items():
        _create_cube(name, dimensions)
    op.create_table(
        "saved_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("query", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_reports")),
        sa.UniqueConstraint("name", name=op.f("uq_saved_reports_name")),
    )


def downgrade() -> None:
    op.drop_table("saved_reports")
    for name in CUBES:
        op.drop_table(f"report_{name}")
    with op.batch_alter_table("clicks") as batch:
        batch.drop_index("ix_clicks_campaign_id_visitor_created_at")
        batch.drop_column("visitor")
        batch.drop_column("is_unique")
        batch.drop_column("referrer_domain")
