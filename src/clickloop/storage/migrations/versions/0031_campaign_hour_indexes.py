"""SQLite: `report_campaigns` indexed by hour and traffic source, and by hour and offer, so a
month of source or offer by hour is grouped in an index's order instead of sorting the month's
rows (source by hour at 10M clicks: 107 -> 49 ms). PostgreSQL hashes those rows as fast
without them, and would update them whenever an update of a cube row is not a HOT one.

Revision ID: 0031_campaign_hour_indexes
Revises: 0030_exact_sums
"""

from __future__ import annotations

from alembic import op

revision = "0031_campaign_hour_indexes"
down_revision = "0030_exact_sums"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_report_campaigns_hour_traffic_source_id": ["hour", "traffic_source_id"],
    "ix_report_campaigns_hour_offer_id": ["hour", "offer_id"],
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, columns in INDEXES.items():
        op.create_index(name, "report_campaigns", columns)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in INDEXES:
        op.drop_index(name, table_name="report_campaigns")
