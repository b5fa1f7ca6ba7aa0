"""the daily cubes per local hour of day (dayparting): all traffic, campaign/source/offer,
country by device type, device/OS/browser and language, per span of local days and hour of day,
so a month by hour of day reads ~5 spans x 24 hours instead of 720 hourly rows per group; the
local hour of day in `cube_moves`

Revision ID: 0025_dayparts
Revises: 0024_click_moves
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025_dayparts"
down_revision = "0024_click_moves"
branch_labels = None
depends_on = None

ENTITIES = ("campaign_id", "traffic_source_id", "offer_id")
# Table -> (its entities, its other dimensions), as domain/report_facts.py has them here.
TABLES = {
    "report_daypart_totals": ((), ()),
    "report_daypart_campaigns": (ENTITIES, ()),
    "report_daypart_country_devices": ((), ("country", "device_type")),
    "report_daypart_devices": ((), ("device_type", "os", "browser")),
    "report_daypart_languages": ((), ("language",)),
}
SETTING = "report_daily_zone"


def upgrade() -> None:
    for table, (entities, dimensions) in TABLES.items():
        op.create_table(
            table,
            *(sa.Column(name, sa.Integer(), nullable=False) for name in ("days", "day", *entities)),
            *(sa.Column(name, sa.Text(), nullable=False) for name in dimensions),
            sa.Column("hour_of_day", sa.Integer(), nullable=False),
            sa.Column("fact", sa.String(length=80), nullable=False),
            sa.Column("n", sa.BigInteger(), nullable=False),
            sa.Column("u", sa.BigInteger(), nullable=False),
            sa.Column("m", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint(
                "days", "day", *entities, *dimensions, "hour_of_day", "fact",
                name=op.f(f"pk_{table}"),
            ),
        )  # fmt: skip
    # The moves waiting now were made without the hour of day: a rebuild folds them in before
    # it recomputes the days from the hourly cubes.
    op.add_column(
        "cube_moves",
        sa.Column("hour_of_day", sa.Integer(), nullable=False, server_default="0"),
    )
    # With clicks stored, the daily cubes stay unread until `clickloop reports rebuild --daily`
    # sums the new ones from the hourly cubes (docs/reports.md).
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
    # The older version's fold leaves the hour of day of the moves waiting: nothing it reads.
    with op.batch_alter_table("cube_moves") as batch:
        batch.drop_column("hour_of_day")
    for table in TABLES:
        op.drop_table(table)
