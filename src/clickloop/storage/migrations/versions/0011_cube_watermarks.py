"""cube_watermarks: on SQLite the report cubes follow the clicks by their rowid instead of
being kept inside each click batch

Revision ID: 0011_cube_watermarks
Revises: 0010_click_visitors
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_cube_watermarks"
down_revision = "0010_click_visitors"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cube_watermarks",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_cube_watermarks")),
    )
    if op.get_bind().dialect.name == "sqlite":
        # Every click so far was added to the cubes by its own batch.
        op.execute(
            sa.text(
                "INSERT INTO cube_watermarks (name, position) "
                "SELECT 'clicks', coalesce(max(rowid), 0) FROM clicks"
            )
        )


def downgrade() -> None:
    op.drop_table("cube_watermarks")
