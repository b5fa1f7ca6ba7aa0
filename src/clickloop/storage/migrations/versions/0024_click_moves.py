"""unique clicks in `cube_moves`: on PostgreSQL a click batch leaves its clicks' facts there for
the follower, as postbacks leave their conversions', instead of upserting into every cube

Revision ID: 0024_click_moves
Revises: 0023_country_os_browser_totals
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024_click_moves"
down_revision = "0023_country_os_browser_totals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Conversion moves carry no unique clicks: 0 for the rows waiting now.
    op.add_column("cube_moves", sa.Column("u", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    # The older version's fold would drop the unique clicks of the click moves still waiting.
    if op.get_bind().execute(sa.text("SELECT 1 FROM cube_moves LIMIT 1")).first() is not None:
        raise RuntimeError(
            "moves are waiting for the report cubes: start the server once, or run "
            "`clickloop reports rebuild --daily`, then downgrade again"
        )
    with op.batch_alter_table("cube_moves") as batch:
        batch.drop_column("u")
