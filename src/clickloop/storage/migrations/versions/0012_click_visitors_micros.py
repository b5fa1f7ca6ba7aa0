"""click_visitors keeps times as µs since the epoch, and the click before the last one, so
that one upsert both moves a visitor forward and returns what it held (RETURNING)

Revision ID: 0012_click_visitors_micros
Revises: 0011_cube_watermarks
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0012_click_visitors_micros"
down_revision = "0011_cube_watermarks"
branch_labels = None
depends_on = None


def _recreate(columns: list[sa.Column[Any]], carried: dict[str, str]) -> None:
    """click_visitors again with `columns` (besides the key), its rows carried over through a
    plain table (the primary key's name stays taken until the old table is gone)."""
    expressions = ", ".join(f"{expression} AS {name}" for name, expression in carried.items())
    op.execute(
        sa.text(
            "CREATE TABLE click_visitors_carried AS "
            f"SELECT campaign_id, visitor, {expressions} FROM click_visitors"
        )
    )
    op.drop_table("click_visitors")
    op.create_table(
        "click_visitors",
        sa.Column("campaign_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("visitor", sa.BigInteger(), autoincrement=False, nullable=False),
        *columns,
        sa.PrimaryKeyConstraint("campaign_id", "visitor", name=op.f("pk_click_visitors")),
        sqlite_with_rowid=False,
    )
    names = ", ".join(["campaign_id", "visitor", *carried])
    op.execute(
        sa.text(f"INSERT INTO click_visitors ({names}) SELECT {names} FROM click_visitors_carried")
    )
    op.drop_table("click_visitors_carried")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":  # text 'YYYY-MM-DD HH:MM:SS[.ffffff]'
        micros = (
            "CAST(strftime('%s', substr(last_at, 1, 19)) AS INTEGER) * 1000000 "
            "+ CAST(substr(last_at || '.000000', 21, 6) AS INTEGER)"
        )
    else:
        micros = "CAST(round(extract(epoch FROM last_at) * 1000000) AS BIGINT)"
    _recreate(
        [
            sa.Column("last_us", sa.BigInteger(), nullable=False),
            sa.Column("before_us", sa.BigInteger(), nullable=True),
        ],
        {"last_us": micros},
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        moment = "strftime('%Y-%m-%d %H:%M:%S', last_us / 1000000, 'unixepoch') || '.000000'"
    else:
        moment = "to_timestamp(last_us / 1000000.0)"
    _recreate(
        [sa.Column("last_at", sa.DateTime(timezone=True), nullable=False)], {"last_at": moment}
    )
