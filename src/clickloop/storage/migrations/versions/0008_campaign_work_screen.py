"""campaigns: archived_at (hidden from the list, link 404) and tracking_domain (the base URL of
its link); deliveries by target (a campaign page's S2S health)

Revision ID: 0008_campaign_work_screen
Revises: 0007_roles_and_rate_updates
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_campaign_work_screen"
down_revision = "0007_roles_and_rate_updates"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("tracking_domain", sa.String(200), nullable=True))
    with op.batch_alter_table("deliveries") as batch:
        batch.create_index(
            "ix_deliveries_target_kind_target_id_id", ["target_kind", "target_id", "id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_target_kind_target_id_id")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("tracking_domain")
        batch.drop_column("archived_at")
