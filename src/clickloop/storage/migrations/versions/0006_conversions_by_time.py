"""conversions listed by time: an index on (converted_at, id)

Revision ID: 0006_conversions_by_time
Revises: 0005_clicks_partitions
"""

from __future__ import annotations

from alembic import op

revision = "0006_conversions_by_time"
down_revision = "0005_clicks_partitions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversions") as batch:
        batch.create_index("ix_conversions_converted_at_id", ["converted_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("conversions") as batch:
        batch.drop_index("ix_conversions_converted_at_id")
