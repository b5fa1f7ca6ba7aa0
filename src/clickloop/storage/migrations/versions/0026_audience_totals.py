"""country, device type, OS and browser over all traffic kept with the language too, by UTC
hour and per span of local days (`audience_totals`, in place of `country_os_browser_totals`):
language by country, device type, OS or browser reads the cubes instead of the clicks

Revision ID: 0026_audience_totals
Revises: 0025_dayparts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026_audience_totals"
down_revision = "0025_dayparts"
branch_labels = None
depends_on = None

SETTING = "report_daily_zone"
GEO = ("country", "device_type", "os", "browser")
# (hourly table, daily table, their dimensions) before and after.
BEFORE = ("report_country_os_browser_totals", "report_daily_country_os_browser_totals", GEO)
AFTER = ("report_audience_totals", "report_daily_audience_totals", (*GEO, "language"))


def _create(
    table: str, buckets: list[tuple[str, sa.types.TypeEngine[int]]], dims: tuple[str, ...]
) -> None:
    op.create_table(
        table,
        *(sa.Column(name, kind, nullable=False) for name, kind in buckets),
        *(sa.Column(name, sa.Text(), nullable=False) for name in dims),
        sa.Column("fact", sa.String(length=80), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("u", sa.BigInteger(), nullable=False),
        sa.Column("m", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            *(name for name, _ in buckets), *dims, "fact", name=op.f(f"pk_{table}")
        ),
    )


def _replace(old: tuple[str, str, tuple[str, ...]], new: tuple[str, str, tuple[str, ...]]) -> None:
    """Drop the cubes of `old`, create `new`'s empty; with clicks stored, the hourly one waits
    for `clickloop reports rebuild` (docs/reports.md) and the daily cubes are not ready."""
    op.drop_table(old[1])
    op.drop_table(old[0])
    _create(new[0], [("hour", sa.BigInteger())], new[2])
    _create(new[1], [("days", sa.Integer()), ("day", sa.Integer())], new[2])
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
        "unfilled": [*(n for n in unfilled if f"report_{n}" != old[0]), new[0][len("report_") :]],
    }
    conn.execute(settings.delete().where(settings.c.key == SETTING))
    conn.execute(settings.insert().values(key=SETTING, value=value))


def upgrade() -> None:
    _replace(BEFORE, AFTER)


def downgrade() -> None:
    _replace(AFTER, BEFORE)
