"""cube_moves: a postback's conversion moves wait here for the follower, which sums them into
the report cubes, instead of each postback upserting a row into every cube

Revision ID: 0018_cube_moves
Revises: 0017_country_device_totals
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_cube_moves"
down_revision = "0017_country_device_totals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cube_moves",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("traffic_source_id", sa.Integer(), nullable=False),
        sa.Column("offer_id", sa.Integer(), nullable=False),
        sa.Column("browser", sa.Text(), nullable=False),
        sa.Column("country", sa.Text(), nullable=False),
        sa.Column("device_type", sa.Text(), nullable=False),
        sa.Column("language", sa.Text(), nullable=False),
        sa.Column("os", sa.Text(), nullable=False),
        sa.Column("dimension", sa.Text(), nullable=True),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("fact", sa.String(length=80), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("m", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cube_moves")),
    )


def downgrade() -> None:
    # The cubes lack the moves still waiting: the older version would never add them.
    if op.get_bind().execute(sa.text("SELECT 1 FROM cube_moves LIMIT 1")).first() is not None:
        raise RuntimeError(
            "conversion moves are waiting for the report cubes: start the server once, or run "
            "`clickloop reports rebuild --daily`, then downgrade again"
        )
    op.drop_table("cube_moves")
