"""country by device type, OS and browser over all traffic, by UTC hour and per span of local
days: geo by OS or browser reads the cubes instead of the clicks

Revision ID: 0023_country_os_browser_totals
Revises: 0022_daily_spans
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023_country_os_browser_totals"
down_revision = "0022_daily_spans"
branch_labels = None
depends_on = None

HOURLY = "report_country_os_browser_totals"
DAILY = "report_daily_country_os_browser_totals"
DIMENSIONS = ("country", "device_type", "os", "browser")
SETTING = "report_daily_zone"


def _create(table: str, buckets: list[tuple[str, sa.types.TypeEngine[int]]]) -> None:
    op.create_table(
        table,
        *(sa.Column(name, kind, nullable=False) for name, kind in buckets),
        *(sa.Column(name, sa.Text(), nullable=False) for name in DIMENSIONS),
        sa.Column("fact", sa.String(length=80), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("u", sa.BigInteger(), nullable=False),
        sa.Column("m", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            *(name for name, _ in buckets), *DIMENSIONS, "fact", name=op.f(f"pk_{table}")
        ),
    )


def upgrade() -> None:
    _create(HOURLY, [("hour", sa.BigInteger())])
    _create(DAILY, [("days", sa.Integer()), ("day", sa.Integer())])
    # No cube holds the country with the OS and browser: with clicks stored, both stay unread
    # until `clickloop reports rebuild` fills them from the clicks (docs/reports.md), as 0019.
    conn = op.get_bind()
    if conn.execute(sa.text("SELECT 1 FROM clicks LIMIT 1")).first() is None:
        return
    settings = sa.table("settings", sa.column("key", sa.String()), sa.column("value", sa.JSON()))
    state = conn.execute(sa.select(settings.c.value).where(settings.c.key == SETTING)).scalar()
    state = state if isinstance(state, dict) else {}
    zone = state.get("timezone")
    unfilled = state.get("unfilled")
    unfilled = unfilled if isinstance(unfilled, list) else []
    value = {
        "timezone": zone if isinstance(zone, str) else "UTC",
        "ready": False,
        "unfilled": [*unfilled, "country_os_browser_totals"],
    }
    conn.execute(settings.delete().where(settings.c.key == SETTING))
    conn.execute(settings.insert().values(key=SETTING, value=value))


def downgrade() -> None:
    op.drop_table(DAILY)
    op.drop_table(HOURLY)
