"""the dayparted cube of countries over all traffic (`report_daypart_countries`: per span of
local days, country and local hour of day), so a month of country by hour reads its 42k
one-day rows instead of 141k hourly rows by country and device type

Revision ID: 0032_daypart_countries
Revises: 0031_campaign_hour_indexes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0032_daypart_countries"
down_revision = "0031_campaign_hour_indexes"
branch_labels = None
depends_on = None

TABLE = "report_daypart_countries"
CUBE = "daypart_countries"
# Its seal marks start where those of the country by device type are (both empty or both kept).
LIKE = "daypart_country_devices"
SETTING = "report_daily_zone"
# domain/report_facts.py's VALUES at this revision: a key's facts side by side.
TYPES = ("lead", "sale", "rejected", "registration", "deposit", "trash", "rebill")
VALUES = [
    "n",
    "u",
    "m",
    *(f"{p}_{k}_{x}" for k in TYPES for p in ("ct", "vt") for x in "nm"),
    *(f"{p}_{x}" for p in ("ct", "vt") for x in "nm"),
]


def upgrade() -> None:
    op.create_table(
        TABLE,
        *(sa.Column(name, sa.Integer(), nullable=False) for name in ("days", "day")),
        sa.Column("country", sa.Text(), nullable=False),
        sa.Column("hour_of_day", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=80), nullable=False),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False, server_default=sa.text("0"))
            for name in VALUES
        ),
        sa.PrimaryKeyConstraint(
            "days", "day", "country", "hour_of_day", "kind", name=op.f(f"pk_{TABLE}")
        ),
    )
    for prefix in ("spans:", "kept:"):
        op.execute(
            "INSERT INTO cube_watermarks (name, position) "
            f"SELECT '{prefix}{CUBE}', position FROM cube_watermarks WHERE name = '{prefix}{LIKE}'"
        )
    # With clicks stored, the daily cubes stay unread until `clickloop reports rebuild --daily`
    # sums the new one from the hourly cubes (docs/reports.md).
    conn = op.get_bind()
    if conn.execute(sa.text("SELECT 1 FROM clicks LIMIT 1")).first() is None:
        return
    settings = sa.table("settings", sa.column("key", sa.String()), sa.column("value", sa.JSON()))
    state = conn.execute(sa.select(settings.c.value).where(settings.c.key == SETTING)).scalar()
    state = state if isinstance(state, dict) else {}
    zone = state.get("timezone")
    value = {"timezone": zone if isinstance(zone, str) else "UTC", "ready": False}
    if isinstance(state.get("unfilled"), list) and state["unfilled"]:
        value["unfilled"] = state["unfilled"]
    conn.execute(settings.delete().where(settings.c.key == SETTING))
    conn.execute(settings.insert().values(key=SETTING, value=value))


def downgrade() -> None:
    op.execute(f"DELETE FROM cube_watermarks WHERE name IN ('spans:{CUBE}', 'kept:{CUBE}')")
    op.drop_table(TABLE)
