"""PostgreSQL: `total8(bigint)`, the sum of bigints as a bigint (`int8pl` per row: an
overflow is an error, as SQLite's integer sum), which reports use instead of `sum`, whose
128-bit state and `numeric` result cost a month by hour (42k groups) a third of its grouping

Revision ID: 0030_exact_sums
Revises: 0029_wide_cube_rows
"""

from __future__ import annotations

from alembic import op

revision = "0030_exact_sums"
down_revision = "0029_wide_cube_rows"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE AGGREGATE total8(bigint) "
            "(SFUNC = int8pl, STYPE = bigint, COMBINEFUNC = int8pl, PARALLEL = SAFE)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP AGGREGATE total8(bigint)")
