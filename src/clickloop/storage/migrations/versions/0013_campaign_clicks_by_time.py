"""A campaign's clicks list reads the (campaign, time) index in time order: the index of
campaign and click id goes, and with it an index entry per click insert

Revision ID: 0013_campaign_clicks_by_time
Revises: 0012_click_visitors_micros
"""

from __future__ import annotations

from alembic import op

revision = "0013_campaign_clicks_by_time"
down_revision = "0012_click_visitors_micros"
branch_labels = None
depends_on = None

LIST_INDEX = "ix_clicks_campaign_id_subid"


def upgrade() -> None:
    op.drop_index(LIST_INDEX, table_name="clicks")


def downgrade() -> None:
    op.create_index(LIST_INDEX, "clicks", ["campaign_id", "subid"])
