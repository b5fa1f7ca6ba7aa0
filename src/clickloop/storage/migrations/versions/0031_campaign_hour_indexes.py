"""`report_campaigns` indexed by hour and traffic source, and by hour and offer: SQLite groups
a month of source or offer by hour in the order of an index instead of sorting the month's
rows (source by hour at 10M clicks: 107 -> 49 ms)

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
    for name, columns in INDEXES.items():
        op.create_index(name, "report_campaigns", columns)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="report_campaigns")
