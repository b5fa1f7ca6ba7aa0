"""request headers of S2S targets (templates) and of queued deliveries (rendered)

Revision ID: 0004_s2s_headers
Revises: 0003_report_aggregates
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_s2s_headers"
down_revision = "0003_report_aggregates"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("traffic_sources") as batch:
        batch.add_column(sa.Column("postback_headers", sa.JSON(), nullable=True))
    with op.batch_alter_table("campaign_postbacks") as batch:
        batch.add_column(sa.Column("headers", sa.JSON(), nullable=True))
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("headers", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("headers")
    with op.batch_alter_table("campaign_postbacks") as batch:
        batch.drop_column("headers")
    with op.batch_alter_table("traffic_sources") as batch:
        batch.drop_column("postback_headers")
