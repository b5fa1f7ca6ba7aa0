"""the report cubes' spans of several days sealed a day at a time: the writers keep a longer span
only once it ends by its cube's mark, row `spans:<cube>` of `cube_watermarks`
(storage/cube_spans.py), so a fact of today costs its one-day rows alone

Revision ID: 0027_sealed_spans
Revises: 0026_audience_totals
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0027_sealed_spans"
down_revision = "0026_audience_totals"
branch_labels = None
depends_on = None

SETTING = "report_daily_zone"
# The cubes of spans of days, as domain/report_facts.py has them here.
SPANNED = (
    "daily_audience_totals",
    "daily_campaign_countries",
    "daily_campaign_country_devices",
    "daily_campaign_devices",
    "daily_countries",
    "daily_devices",
    "daily_languages",
    "daypart_campaigns",
    "daypart_country_devices",
    "daypart_devices",
    "daypart_languages",
    "daypart_totals",
    "marked_spans",
)


def upgrade() -> None:
    with op.batch_alter_table("cube_watermarks") as batch:  # `spans:` and the longest cube's name
        batch.alter_column("name", type_=sa.String(64), existing_nullable=False)
    # Every span holds its facts now (the writers kept them all): any day is a correct mark.
    # Today's UTC day: from the next local day on, the server seals each day that ends.
    today = int(time.time()) // 86400
    marks = sa.table("cube_watermarks", sa.column("name"), sa.column("position"))
    op.bulk_insert(marks, [{"name": f"spans:{cube}", "position": today} for cube in SPANNED])


def downgrade() -> None:
    op.execute("DELETE FROM cube_watermarks WHERE name LIKE 'spans:%'")
    with op.batch_alter_table("cube_watermarks") as batch:
        batch.alter_column("name", type_=sa.String(32), existing_nullable=False)
    # The spans past the marks miss facts, which the older version would read: with clicks
    # stored, its daily cubes stay unread until `clickloop reports rebuild --daily`.
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
