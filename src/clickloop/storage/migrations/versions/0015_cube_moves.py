"""cube_moves: on SQLite the conversions that postbacks move reach the report cubes with the
clicks' fold instead of inside each postback batch

Revision ID: 0015_cube_moves
Revises: 0014_report_marked_spans
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_cube_moves"
down_revision = "0014_report_marked_spans"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sides = [
        column
        for side in ("before", "after")
        for column in (
            sa.Column(f"{side}_type", sa.String(length=64), nullable=True),
            sa.Column(f"{side}_payout", sa.BigInteger(), nullable=True),
            sa.Column(f"{side}_at", sa.BigInteger(), nullable=True),
        )
    ]
    op.create_table(
        "cube_moves",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subid", sa.String(length=24), nullable=False),
        *sides,
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cube_moves")),
        sqlite_autoincrement=True,
    )
    if op.get_bind().dialect.name == "sqlite":
        # Every move so far was added to the cubes by its own batch.
        op.execute(sa.text("INSERT INTO cube_watermarks (name, position) VALUES ('moves', 0)"))


def downgrade() -> None:
    op.drop_table("cube_moves")
    op.execute(sa.text("DELETE FROM cube_watermarks WHERE name = 'moves'"))
